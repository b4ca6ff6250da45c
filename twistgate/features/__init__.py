"""
Feature registration.  Every module in this package is imported on the first
config load; each imports its feature's code, which registers its config
sections (twistgate.config.extensions) and its services and stages
(twistgate.stages).  A new feature adds a module here and edits nothing else
shared.
"""
