"""The client layer (bk_notebook/client): against scripted servers on 127.0.0.1."""
