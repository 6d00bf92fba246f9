"""A pre-imported Python for running many short training processes.

Importing torch, torchvision and friends takes ~9 s per process on a small machine; the
matrix starts well over a hundred processes. `serve` imports those libraries once and forks a
new process per request. The client side makes that look like `python ...`: each run is a
new OS process with the client's argv, cwd, environment and stdin/stdout/stderr, exiting with
the run's exit code; only the third-party imports are shared, the project is imported fresh.

    python forkserver.py serve SOCKET            # prints "ready" once preloaded
    python forkserver.py -m package.module ARGS  # with FORKSERVER_SOCKET=SOCKET in the env

With FORKSERVER_PID_FILE set, the client writes the worker's pid there once it has started.
With FORKSERVER_EXECUTABLE naming a script that runs this client, the worker's sys.executable
is that script, so the processes a run starts (torchrun workers, test subprocesses) are
preloaded as well. Interpreter options such as `-X importtime` fall back to a real python.
"""

import json
import os
import runpy
import signal
import socket
import struct
import sys
import traceback

PRELOADED = (
    "numpy",
    "PIL.Image",
    "yaml",
    "tqdm",
    "torch",
    "torch.distributed.run",
    "torch.nn.parallel",
    "torch.utils.tensorboard",
    "torchvision",
    "torchvision.transforms.v2",
    "torchmetrics",
    "torchinfo",
    "tokenizers",
    "sklearn.datasets",
    "matplotlib.pyplot",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "torch.onnx._internal.exporter._core",
    "wandb",
    "optuna",
)
LENGTH = struct.Struct("!I")


def send_message(connection: socket.socket, payload: bytes) -> None:
    connection.sendall(LENGTH.pack(len(payload)) + payload)


def receive_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        data += chunk
    return data


def receive_message(connection: socket.socket) -> bytes:
    (size,) = LENGTH.unpack(receive_exactly(connection, LENGTH.size))
    return receive_exactly(connection, size)


# --- server -------------------------------------------------------------------------


def serve(socket_path: str) -> None:
    import importlib

    for module in PRELOADED:
        importlib.import_module(module)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(64)
    print("ready", flush=True)
    while True:
        connection, _ = server.accept()
        if os.fork() == 0:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                run_request(connection)
            finally:
                # Even a worker that fails (its client gone, its stderr a broken pipe) must not
                # run the server's exit handlers: they delete temporary folders the server and
                # every other worker share, such as wandb's media staging folder.
                os._exit(1)
        connection.close()


def run_request(connection: socket.socket) -> None:
    _, fds, _, _ = socket.recv_fds(connection, 1, 3)
    request = json.loads(receive_message(connection))
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own stdio
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    os.setpgid(0, 0)
    send_message(connection, str(os.getpid()).encode())
    code = execute(request)
    sys.stdout.flush()
    sys.stderr.flush()
    send_message(connection, str(code).encode())
    os._exit(code)


def execute(request: dict) -> int:
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # Processes the run starts with sys.executable (torchrun workers, subprocess calls) are
    # preloaded too when the client names a wrapper script that calls it.
    sys.executable = request["env"].get("FORKSERVER_EXECUTABLE", sys.executable)
    python_path = [
        entry for entry in request["env"].get("PYTHONPATH", "").split(os.pathsep) if entry
    ]
    argv = request["argv"]
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path[:0] = [request["cwd"], *python_path]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            sys.path[:0] = ["", *python_path]
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.argv = argv
            sys.path[:0] = [os.path.dirname(os.path.abspath(argv[0])), *python_path]
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exit_request:
        return exit_code(exit_request.code)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


# --- client -------------------------------------------------------------------------


def run_client(argv: list[str]) -> int:
    if argv[0] == "-u":  # unbuffered output: the worker writes straight to the client's fds
        argv = argv[1:]
    if argv[0].startswith("-") and argv[0] not in ("-m", "-c"):
        # Interpreter options (-X importtime, -I, -S ...) need a real interpreter.
        os.execv(sys.executable, [sys.executable, *argv])
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(os.environ["FORKSERVER_SOCKET"])
    socket.send_fds(connection, [b"x"], [0, 1, 2])
    request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
    send_message(connection, json.dumps(request).encode())
    worker = int(receive_message(connection))
    if "FORKSERVER_PID_FILE" in os.environ:  # lets fault-injection tests kill the real worker
        write_atomically(os.environ["FORKSERVER_PID_FILE"], str(worker))

    def forward(signum, frame):
        os.killpg(worker, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, forward)
    try:
        return int(receive_message(connection))
    except ConnectionError:
        return 1  # the worker died without reporting (killed by a signal)


def write_atomically(path: str, text: str) -> None:
    """Readers waiting for `path` to appear never see it empty or half-written."""
    partial = f"{path}.partial"
    with open(partial, "w") as file:
        file.write(text)
    os.replace(partial, path)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        sys.exit(run_client(sys.argv[1:]))
