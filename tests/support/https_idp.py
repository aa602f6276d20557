#!/usr/bin/env python3
"""A local OpenID Connect identity provider for tests: HTTPS on 127.0.0.1,
serving a discovery document and the JWKS in DIR/jwks.json (read at every
request, so a test rotates keys by replacing the file). Writes its port to
--port-file once listening; counts JWKS fetches in DIR/fetches. Exits when
its parent does, or after --lifetime seconds."""
import argparse
import http.server
import json
import os
import ssl
import threading
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--lifetime", type=float, default=600)
    args = parser.parse_args()
    lock = threading.Lock()
    state = {"fetches": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            port = self.server.server_address[1]
            issuer = "https://127.0.0.1:%d" % port
            if self.path == "/.well-known/openid-configuration":
                body = json.dumps({"issuer": issuer,
                                   "jwks_uri": issuer + "/jwks.json"}).encode()
            elif self.path == "/jwks.json":
                with open(os.path.join(args.dir, "jwks.json"), "rb") as f:
                    body = f.read()
                with lock:
                    state["fetches"] += 1
                    tmp = os.path.join(args.dir, "fetches.tmp")
                    with open(tmp, "w") as f:
                        f.write(str(state["fetches"]))
                    os.replace(tmp, os.path.join(args.dir, "fetches"))
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *unused):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    parent = os.getppid()

    def watchdog():
        deadline = time.time() + args.lifetime
        while time.time() < deadline and os.getppid() == parent:
            time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
