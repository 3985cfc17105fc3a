"""The optional face-enhancement stage (``pip install oldphoto[faces]``)."""
