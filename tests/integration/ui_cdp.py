#!/usr/bin/python3
"""A minimal DevTools-protocol client for ui_browser.sh (Debian's python3-websocket).

  ui_cdp.py PORT wait TIMEOUT JS   : until JS (an expression) is truthy; prints its last value
  ui_cdp.py PORT eval JS           : prints the value of JS as JSON
  ui_cdp.py PORT screenshot FILE   : writes a PNG of the page

It talks to the first page target of a chromium started with
--remote-debugging-port=PORT. Exit 0 on success, 1 on timeout or error.
"""
import base64
import json
import sys
import time
import urllib.request

import websocket


def page_socket(port):
    deadline = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=5) as r:
                targets = json.load(r)
            pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
            if pages:
                # Chromium 11x+ checks the Origin of DevTools websockets.
                return websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30,
                                                   suppress_origin=True)
        except OSError:
            pass
        if time.time() > deadline:
            raise SystemExit("no page target on the DevTools port")
        time.sleep(0.5)


class Page:
    def __init__(self, port):
        self.ws = page_socket(port)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            return None
        return result["result"].get("value")


def main():
    port, command = sys.argv[1], sys.argv[2]
    page = Page(port)
    if command == "eval":
        print(json.dumps(page.evaluate(sys.argv[3])))
        return 0
    if command == "wait":
        timeout, expression = float(sys.argv[3]), sys.argv[4]
        deadline = time.time() + timeout
        value = None
        while time.time() < deadline:
            value = page.evaluate(expression)
            if value:
                print(json.dumps(value))
                return 0
            time.sleep(0.5)
        print(json.dumps(value))
        return 1
    if command == "screenshot":
        data = page.call("Page.captureScreenshot", format="png")["data"]
        with open(sys.argv[3], "wb") as f:
            f.write(base64.b64decode(data))
        return 0
    raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    sys.exit(main())
