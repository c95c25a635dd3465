"""The batch layer (bk_notebook/batch): runs, checkpoints, scoring, Dask and datasets."""
