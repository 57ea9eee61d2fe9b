"""The command line as a user meets it: fast listing commands, one-line errors, no tracebacks."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

from .conftest import run_cli

LIGHT = [["--help"], ["plugins"], ["plugins", "--json"], ["methods"], ["protocols"], ["run", "--help"]]


@pytest.mark.parametrize("args", LIGHT, ids=[" ".join(a) for a in LIGHT])
def test_listing_commands_do_not_import_torch(args):
    code = (
        "import sys\n"
        "from gaitbench.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('torch', 'timm', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_methods_and_protocols_listing():
    methods = run_cli("methods")
    names = [line.split()[0] for line in methods.stdout.splitlines() if not line.startswith(" ")]
    assert methods.returncode == 0 and names == ["deepgaitv2", "gaitbase", "gaitgl", "gaitmask", "gaitpart", "gaitset"]
    assert "[plugin gaitset" in methods.stdout
    assert "paper: Chao, He, Zhang, Feng. GaitSet: Regarding Gait as a Set" in methods.stdout  # the publication
    protocols = run_cli("protocols")
    assert "casiab" in protocols.stdout and "v1.0.0" in protocols.stdout


def assert_one_line_error(proc, *fragments):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_unknown_method():
    proc = run_cli("run", "--method", "gaitsett", "--protocol", "casiab")
    assert_one_line_error(proc, "unknown method 'gaitsett'", "did you mean 'gaitset'?",
                          "Available: deepgaitv2, gaitbase, gaitgl, gaitmask, gaitpart, gaitset")


def test_unknown_protocol():
    proc = run_cli("run", "--method", "gaitset", "--protocol", "casia")
    assert_one_line_error(proc, "unknown protocol 'casia'", "did you mean 'casiab'?")


def test_missing_data_root(tmp_path):
    proc = run_cli("run", "--method", "gaitset", "--protocol", "casiab", "--data-root", str(tmp_path / "nowhere"))
    assert_one_line_error(proc, f"data root {tmp_path / 'nowhere'} does not exist")


def test_empty_dataset(tmp_path):
    proc = run_cli("run", "--method", "gaitset", "--protocol", "casiab", "--data-root", str(tmp_path))
    assert_one_line_error(proc, "no sequences found under", "<id>/<type>/<view>/*.pkl")


def write_tree(root, bad_file=None):
    for s in ("001", "002", "075", "076"):
        for t in ("nm-01", "nm-05"):
            for v in ("000", "090"):
                d = root / s / t / v
                d.mkdir(parents=True)
                (d / f"{v}.pkl").write_bytes(pickle.dumps(np.zeros((4, 64, 64), np.uint8)))
    if bad_file is not None:
        (root / "075" / "nm-01" / "000" / "000.pkl").write_bytes(bad_file)  # test split: always read


def test_pickle_that_is_not_an_array(tmp_path):
    write_tree(tmp_path, bad_file=pickle.dumps({"frames": [1, 2, 3]}))
    proc = run_cli("run", "--method", "gaitset", "--protocol", "casiab", "--data-root", str(tmp_path), "--strict",
                   "--iterations", "1", "--out", str(tmp_path / "run"), "--set", "sampler.P=2", "--set", "sampler.K=2",
                   "--set", "sampler.min_frames=1")
    assert_one_line_error(proc, "000.pkl", "expected a numpy array, found dict")


def test_training_sequences_all_too_short(tmp_path):
    write_tree(tmp_path)  # 4-frame sequences; the paper recipe trains on sequences of >= 15 frames
    proc = run_cli("run", "--method", "gaitset", "--protocol", "casiab", "--data-root", str(tmp_path),
                   "--iterations", "1", "--out", str(tmp_path / "run"), "--set", "sampler.P=2", "--set", "sampler.K=2")
    assert_one_line_error(proc, "no readable training sequence of subject", "4 frames, fewer than the 15")


def test_misspelt_set_key():
    proc = run_cli("run", "--method", "gaitset", "--protocol", "casiab", "--set", "sampler.PP=2")
    assert_one_line_error(proc, "unknown key 'PP'", "did you mean 'P'?")


def test_split_that_selects_nothing(small_synth, tmp_path):
    import shutil

    store, _ = small_synth
    # without the partition a reduced synthetic set carries, the protocol's ids 001-074 / 075-124 apply
    data = tmp_path / "data"
    shutil.copytree(store.root, data)
    (data / "partition.json").unlink()
    proc = run_cli("run", "--method", "gaitset", "--protocol", "casiab", "--data-root", str(data),
                   "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, "test split of protocol casiab v1.0.0 selects no sequences", "--partition")
