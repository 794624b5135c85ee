"""``caramba serve [CHECKPOINT] [--host] [--port] ...``: registered through ``caramba_register_commands``."""

from __future__ import annotations

import argparse
import sys

from caramba import UsageError
from caramba_agents.serve.model import DEFAULT_MODEL

__all__ = ["ServeCommand"]


class ServeCommand:
    """Serve a caramba language model over the OpenAI Chat Completions API (loopback by default)."""

    def __init__(self, config: object = None) -> None:
        self.config = config

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("checkpoint", nargs="?", default=DEFAULT_MODEL,
                            help=f"a .gguf file, an HF folder, hf://org/name or pkg://package/file "
                                 f"(default: {DEFAULT_MODEL})")
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--name", default="", help="the model id clients send (default: the file's stem)")
        parser.add_argument("--max-len", type=int, default=2048, help="tokens a conversation may hold")
        parser.add_argument("--max-tokens", type=int, default=256, help="reply length when a request names none")
        parser.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body accepted")
        parser.add_argument("--max-waiting", type=int, default=8, help="requests that may wait for the model")
        parser.add_argument("--log-requests", default="", metavar="JSONL",
                            help="append each conversation the model saw, and its reply, to this file")

    def run(self, args: argparse.Namespace) -> int:
        import uvicorn

        from caramba_agents.serve.app import create_app
        from caramba_agents.serve.model import ChatModel

        if not 0 < args.port < 65536:
            raise UsageError(f"--port {args.port} is not a TCP port", hint="use 1-65535")
        runtime = args.runtime  # built by the CLI with this command line's -p filters
        print(f"loading {args.checkpoint} ...", file=sys.stderr, flush=True)
        model = ChatModel.load(args.checkpoint, runtime, name=args.name, max_len=args.max_len)
        app = create_app(model, max_body_bytes=args.max_body_bytes, max_waiting=args.max_waiting,
                         default_max_tokens=args.max_tokens, request_log=args.log_requests or None)
        print(f"serving '{model.name}' on http://{args.host}:{args.port}/v1", file=sys.stderr, flush=True)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                    limit_concurrency=args.max_waiting + 4, timeout_graceful_shutdown=2)
        return 0
