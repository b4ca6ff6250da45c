"""
Reference contender for bench/compare.py: a streaming reverse proxy on
aiohttp (server and one shared ClientSession with keep-alive), on uvloop
when it is installed.  No access log.

    python bench/proxies/aiohttp_proxy.py PORT UPSTREAM_PORT
"""

import asyncio
import sys

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host"}


def app_for(upstream):
    async def start(app):
        app["client"] = ClientSession(
            connector=TCPConnector(limit=0, keepalive_timeout=120),
            timeout=ClientTimeout(total=60),
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Accept"),
        )

    async def stop(app):
        await app["client"].close()

    async def forward(request):
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP]
        body = await request.read() if request.body_exists else None
        async with request.app["client"].request(
            request.method, upstream + request.path_qs, headers=headers, data=body, allow_redirects=False
        ) as answer:
            out = web.StreamResponse(status=answer.status, reason=answer.reason)
            for k, v in answer.headers.items():
                if k.lower() not in HOP:
                    out.headers.add(k, v)
            await out.prepare(request)
            async for chunk in answer.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main(port, upstream_port):
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(app_for(f"http://127.0.0.1:{upstream_port}"), host="127.0.0.1", port=port, access_log=None,
                print=None, backlog=1024)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
