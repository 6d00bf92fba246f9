"""The preloaded-python server behaves like a fresh interpreter, even when a run goes wrong."""

import subprocess
from pathlib import Path

from conftest import run_command
from options import TEMPLATE_DIR

SHARED_MEDIA_FOLDER = "from wandb.sdk.data_types._private import MEDIA_TMP; print(MEDIA_TMP.name)"


def test_a_worker_whose_client_is_gone_leaves_shared_folders_intact(preloaded_python):
    # wandb makes its media staging folder at import, in the server; every worker inherits it.
    media = run_command([*preloaded_python, "-c", SHARED_MEDIA_FOLDER], TEMPLATE_DIR)
    assert media.returncode == 0, media.stderr
    shared_folder = Path(media.stdout.strip())
    assert shared_folder.is_dir()

    late_writer = "import sys, time; time.sleep(0.5); print('late', file=sys.stderr, flush=True)"
    worker = subprocess.Popen(
        [*preloaded_python, "-c", late_writer], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    worker.stderr.close()  # the worker's stderr becomes a broken pipe
    assert worker.wait(timeout=60) != 0
    assert shared_folder.is_dir()
