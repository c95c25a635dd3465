"""The local server layer (bk_notebook/server): its sessions, engines, pool and flow."""
