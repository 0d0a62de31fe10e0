"""Data core: split lists -> manifest -> frame reading -> temporal sampling -> clip transforms -> loaders."""
