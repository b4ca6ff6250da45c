"""
Operations: what a running gateway tells its operators (metrics, access
log, traces, the admin API and dashboard) and how it changes safely (hot
reload); built per generation by `twistgate.services`.
"""
