"""The project as a whole: layers, style, docs, README, notebooks, packaging, benchmarks, exports, security."""
