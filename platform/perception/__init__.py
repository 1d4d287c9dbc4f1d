"""Edge perception (计算卸载): raw point clouds and frames turned into events with business meaning."""
