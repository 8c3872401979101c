"""The uninterrupted runs every multi-node and fault test compares against, once per session.

Both train the schedule of tests/test_distributed.py with two ranks through the fault worker
(recording rank 0's gradients, nothing injected): ``one_node_run`` as one torchrun with two
processes, ``two_node_run`` as two torchrun agents ("nodes") of one process each.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.dist_helpers import process_env, run, start_nodes, tiny_args, torchrun, wait_nodes, write_tiny_images
from tests.test_distributed import SCHEDULE

CHECKPOINT_STEPS = (3, 6, 8)  # SCHEDULE's: every 3 steps and the last


@pytest.fixture(scope="session")
def multinode_images(tmp_path_factory) -> Path:
    return write_tiny_images(tmp_path_factory.mktemp("multinode_images"))


@pytest.fixture(scope="session")
def one_node_run(tmp_path_factory, multinode_images) -> Path:
    out = tmp_path_factory.mktemp("one_node") / "run"
    run(torchrun(2, tiny_args(multinode_images, out, *SCHEDULE), script="fault_train.py"), out.parent / "log.txt",
        env=process_env(CXR_SR_TEST_GRADIENTS="1"))
    return out


@pytest.fixture(scope="session")
def two_node_run(tmp_path_factory, multinode_images) -> Path:
    out = tmp_path_factory.mktemp("two_nodes") / "run"
    nodes = start_nodes(tiny_args(multinode_images, out, *SCHEDULE), out.parent / "node", script="fault_train.py",
                        env=process_env(CXR_SR_TEST_GRADIENTS="1"))
    codes = wait_nodes(nodes)
    assert codes == [0, 0], f"exit codes {codes}\n" + "\n".join(
        (out.parent / f"node{r}.txt").read_text(errors="replace")[-3000:] for r in range(2))
    return out
