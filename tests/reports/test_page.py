"""The self-contained page of the video and example-importance reports."""

import re

from xeval.reports.page import inline, markdown_page


def test_every_string_is_escaped_and_tables_render(tmp_path):
    fig = tmp_path / "figures" / "a'b.png"
    page = markdown_page(
        "# <script>x</script>\n- a <img src=x onerror=1>\n| m | <b> |\n|---|---|\n| 1 | 2 |\n"
        "![ignored](figures/x.png)\n",
        {"k<1>": fig},
        tmp_path,
        title="t <i>",
        caption=lambda k: f"caption of {k}",
    )
    assert "<script>x" not in page and "&lt;script&gt;" in page
    assert "<img src=x" not in page and "&lt;b&gt;" in page
    assert "<title>t &lt;i&gt;</title>" in page
    assert re.search(r"<th>\s*m\s*</th><th>\s*&lt;b&gt;\s*</th>", page)
    assert re.search(r"<td>\s*1\s*</td><td>\s*2\s*</td>", page)
    assert "src='figures/a&#x27;b.png'" in page and "caption of k&lt;1&gt;" in page
    assert "ignored" not in page  # image lines are replaced by the figures
    assert "default-src 'none'" in page and "<script" not in page


def test_inline_markup_after_escaping():
    assert inline("**b** *i* `c` <x>") == "<b>b</b> <i>i</i> <code>c</code> &lt;x&gt;"
    assert inline(r"a \* b") == "a * b"
