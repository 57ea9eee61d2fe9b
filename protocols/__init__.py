"""Built-in protocol files of gaitbench (``*.toml``). Data only: nothing here is code."""
