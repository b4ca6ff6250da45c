"""
Operations: what a running gateway tells its operators (metrics, access
log, traces, the admin API and dashboard) and how it changes safely (hot
reload).  Registered with the core through `twistgate.features.ops`.
"""
