"""The serving example's service: GET / answers JSON saying what it runs on (port 8000)."""

import http.server
import json
import os
import platform


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"example": os.environ.get("ENVNIX_EXAMPLE", ""),
                           "python": platform.python_version()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("", 8000), Handler).serve_forever()
