"""
WebSocket through the gateway (RFC 6455): the handshake is an ordinary
request on an ordinary route (`exchange.UpgradeExchange`); after the
upstream's 101 both connections are relayed byte for byte
(`tunnel.Tunnel`), watched frame by frame without being changed
(`frames.FrameScanner`); `hub.WebSocketHub` holds every open connection,
the caps and the metrics; `config` reads the ``websocket`` sections.
"""
