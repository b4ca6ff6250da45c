"""Transformations: the request path and query, request and response headers, response presets."""
