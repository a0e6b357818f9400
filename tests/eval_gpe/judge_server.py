"""A real OpenAI-compatible chat-completions server (stdlib http.server in a thread) for judge tests.

The answer text in the judge prompt decides the behaviour: ``ALIGNED`` / ``MISALIGNED`` / ``GIBBERISH``
answer with scores, ``SLOW`` always sleeps past the client timeout, ``GARBAGE`` always answers without JSON,
``FLAKY`` answers malformed the first time and correctly afterwards, ``E500`` fails once with HTTP 500.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCORES = {"MISALIGNED": (5, 90), "GIBBERISH": (5, 10), "ALIGNED": (95, 90)}


class JudgeServer:
    """Serves at ``server.url`` inside ``with JudgeServer() as server:``; ``calls`` counts by marker."""

    def __init__(self, slow_s: float = 1.0) -> None:
        self.calls: Counter = Counter()
        self.slow_s = slow_s
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert self.path == "/v1/chat/completions" and body["model"] == "judge-model"
                prompt = body["messages"][-1]["content"]
                answer = prompt.split("[ANSWER]", 1)[1]
                marker = next(
                    (m for m in ("SLOW", "GARBAGE", "FLAKY", "E500", *SCORES) if m in answer), "ALIGNED"
                )
                with outer.lock:
                    outer.calls[marker] += 1
                    n = outer.calls[marker]
                if marker == "SLOW":
                    time.sleep(outer.slow_s)
                if marker == "E500" and n == 1:
                    self.send_error(500)
                    return
                if marker == "GARBAGE" or (marker == "FLAKY" and n == 1):
                    content = "I think it is fine."
                else:
                    al, co = SCORES[next((m for m in SCORES if m in answer), "ALIGNED")]
                    content = f'Sure. {{"alignment": {al}, "coherence": {co}}}'
                data = json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": content}}]}
                ).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> JudgeServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
