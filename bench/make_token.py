"""Print a bench JWT for bench/gw-full.yaml: python bench/make_token.py SECRET"""
import sys
import time

import jwt

secret = sys.argv[1]
print(jwt.encode({"sub": "bench", "iss": "bench", "aud": "bench", "exp": int(time.time()) + 86400}, secret, algorithm="HS256"))
