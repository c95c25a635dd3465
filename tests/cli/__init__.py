"""The entry points (bk_notebook/cli): the console script as a user runs it."""
