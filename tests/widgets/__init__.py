"""The views layer (bk_notebook/widgets): widgets with a faked comm, the player and a real kernel."""
