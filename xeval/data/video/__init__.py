"""Video dataset readers (UCSD, Avenue, ShanghaiTech, Street Scene / MERL tracks,
UBnormal, X-MAN reasons) and the built-in synthetic video benchmark."""
