"""The audio layer (bk_notebook/audio): conversion, live blocks, capture and the sound card."""
