"""Services: the behaviour of Sandcat, pure Python, depending only on ports."""
