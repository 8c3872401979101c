"""``cxr-sr train`` / ``python -m dist_train``: parse, build the trainer, train, close.

Run it directly for one process, or under ``torchrun`` / ``deepspeed`` for several.
"""
from __future__ import annotations

import argparse
import faulthandler
import sys

from dist_train import distributed
from dist_train.checkpoint import CheckpointError, latest_checkpoint
from dist_train.config import ConfigError, load_config
from dist_train.data.shardset import ShardSetError
from dist_train.perceptual import VGGWeightsMissing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="tiny_cpu",
                        help="YAML file, or a bundled config name (tiny_cpu, default); default: tiny_cpu")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest complete checkpoint in train.out_dir (if any)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    # The deepspeed launcher passes --local_rank unless told --no_local_rank; LOCAL_RANK in the
    # environment is what counts, so the flag is accepted and ignored.
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train the SRGAN (under torchrun/deepspeed for several processes)")
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dist_train.trainer import Trainer, TooManyBadSteps

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"cxr-sr train: {err}", file=sys.stderr)
        return 2
    faulthandler.enable()  # a native abort in a worker still shows every thread's Python stack
    env = distributed.init_distributed(cfg.train.device, cfg.dist.comm, cfg.dist.timeout_s)
    trainer, finished = None, False
    try:
        trainer = Trainer(cfg, env)
        if args.resume:
            trainer.resume()
        code = trainer.train()
        trainer.close()
        finished = True
        return code
    except (ConfigError, VGGWeightsMissing, FileNotFoundError, CheckpointError, ShardSetError,
            TooManyBadSteps) as err:
        print(f"cxr-sr train: {err}", file=sys.stderr)
        return 1
    except RuntimeError as err:
        if not (env.distributed and distributed.is_peer_failure(err)):
            raise
        print(f"cxr-sr train: {_lost_peer_message(env, cfg, trainer, err)}", file=sys.stderr, flush=True)
        return 1
    finally:
        del trainer  # its engines hold communication groups: they must go before the groups do
        distributed.shutdown(wait_for_peers=finished)


def _lost_peer_message(env, cfg, trainer, err: Exception) -> str:
    """One line naming the rank and node that stopped answering and the checkpoint to resume from."""
    lost = distributed.unresponsive_ranks(env, grace_s=min(5.0, cfg.dist.timeout_s / 4))
    newest = latest_checkpoint(cfg.train.out_dir)
    where = f" at step {trainer.step}" if trainer is not None else ""
    detail = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else type(err).__name__
    resume = (f"the newest complete checkpoint is {newest}; restart every node with --resume to continue from it"
              if newest else "there is no complete checkpoint yet; a restart starts from step 0")
    return f"rank {env.rank} lost contact with {lost}{where} ({detail}); {resume}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dist_train", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
