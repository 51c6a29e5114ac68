"""The conversion cache: it reads and removes only its own entries, keys them on the model bytes the
worker loaded, checks every file on read (any failure is a miss), refuses a root that overlaps the
user's files, validates its settings before any work, and stays whole under concurrent runs.

The first tests drive `convert/cache.py` directly, on entries made of files written here; the last
ones run the real converter on tiny models, from the command line as a user does."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import run, run_in_process

from quantdoctor.convert import cache
from quantdoctor.convert.model_identity import FILES, ModelDigest
from quantdoctor.errors import UsageError
from quantdoctor.intake.cache_settings import DEFAULT_MAX_MB, cache_settings, check_cache_root

ENTRY_FILES = (cache.RESPONSE, cache.MODEL, cache.FLOAT_TWIN, cache.CALIBRATED, cache.QUANTIZER)


@pytest.fixture
def cache_on(tmp_path, monkeypatch):
    """The cache on, its root a new directory under tmp_path (not yet created)."""
    root = tmp_path / "cache-root"
    monkeypatch.delenv("QUANTDOCTOR_NO_CACHE", raising=False)
    monkeypatch.delenv("QUANTDOCTOR_CACHE_MAX_MB", raising=False)
    monkeypatch.setenv("QUANTDOCTOR_CACHE_DIR", str(root))
    return root


def tree(path: Path) -> dict[str, object]:
    """Every file and directory under `path` with its content digest (files) and mode."""
    found = {}
    for item in sorted(path.rglob("*")):
        info = os.lstat(item)
        content = hashlib.sha256(item.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else None
        found[str(item.relative_to(path))] = (content, stat.S_IMODE(info.st_mode))
    return found


def worker_output(directory: Path, tag: str = "a", size: int = 2000) -> tuple[Path, dict[str, object]]:
    """What a worker that kept everything leaves in `directory`: four models and the quantizer's
    arguments (contents tagged with `tag`), and its response."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in (cache.MODEL, cache.FLOAT_TWIN, cache.CALIBRATED):
        (directory / name).write_bytes((f"{tag}:{name}:".encode() * size)[:size])
    (directory / cache.QUANTIZER).write_text(json.dumps({"tag": tag}))
    return directory, {"stage": "done", "outcome": "ok", "tag": tag}


def key_for(model: Path) -> cache.ConversionKey:
    return cache.ConversionKey(settings="settings", model_path=model, identity=FILES)


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "user" / "model.keras"
    path.parent.mkdir()
    path.write_bytes(b"model weights " * 100)
    return path


def stored(key: cache.ConversionKey, workdir: Path, tag: str = "a") -> Path:
    """Store an entry for the model as it is now; its directory."""
    output, response = worker_output(workdir / f"out-{tag}", tag)
    digest = ModelDigest.take(key.model_path, key.identity).digest
    cache.store(key, digest, output, response)
    return cache_settings().root / key.entry_name(digest)


# --- settings, checked before any work ---------------------------------------------------------

@pytest.mark.parametrize("value", ["inf", "nan", "-5", "lots", "1e400", "1e308"])
def test_a_cache_size_that_is_not_one_is_refused(value, monkeypatch):
    monkeypatch.setenv("QUANTDOCTOR_CACHE_MAX_MB", value)
    with pytest.raises(UsageError, match="QUANTDOCTOR_CACHE_MAX_MB=.* is not a cache size"):
        cache_settings()


@pytest.mark.parametrize("value", ["inf", "-5", "1e308"])
def test_the_command_refuses_a_cache_size_with_one_line_before_any_work(value, tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTDOCTOR_CACHE_MAX_MB", value)
    never_read = tmp_path / "model.keras"
    never_read.write_bytes(b"not even a zip archive")  # read at all, it would be a model error instead
    for command in (["diagnose", str(never_read)], ["run", "--", "touch", str(tmp_path / "ran")]):
        completed = run_in_process(*command, env={**os.environ, "QUANTDOCTOR_NO_CACHE": "0"})
        assert completed.returncode == 2, completed.stderr
        assert completed.stderr.count("\n") == 1 and f"QUANTDOCTOR_CACHE_MAX_MB={value!r} is not a cache size" \
            in completed.stderr
    assert not (tmp_path / "ran").exists()


def test_a_cache_directory_that_is_a_file_is_refused_with_one_line(tmp_path, monkeypatch):
    """QUANTDOCTOR_CACHE_DIR naming a regular file turned the cache off without a word."""
    (tmp_path / "not_a_dir").write_text("mine")
    never_read = tmp_path / "model.keras"
    never_read.write_bytes(b"not even a zip archive")  # read at all, it would be a model error instead
    environment = {**os.environ, "QUANTDOCTOR_NO_CACHE": "0", "QUANTDOCTOR_CACHE_DIR": str(tmp_path / "not_a_dir")}
    completed = run_in_process("diagnose", str(never_read), env=environment)
    assert completed.returncode == 2 and completed.stderr.count("\n") == 1
    assert "is not a directory" in completed.stderr and (tmp_path / "not_a_dir").read_text() == "mine"


@pytest.mark.parametrize("value, megabytes", [("", DEFAULT_MAX_MB), ("0", 0), ("2.5", 2.5)])
def test_cache_sizes(value, megabytes, monkeypatch):
    monkeypatch.setenv("QUANTDOCTOR_CACHE_MAX_MB", value)
    assert cache_settings().max_bytes == int(megabytes * 2**20)


@pytest.mark.parametrize("value, off", [("1", True), ("yes", True), ("0", False), ("false", False),
                                        ("No", False), (" off ", False), ("", False)])
def test_no_cache_reads_the_words_for_false_as_false(value, off, monkeypatch, tmp_path):
    monkeypatch.setenv("QUANTDOCTOR_NO_CACHE", value)
    monkeypatch.setenv("QUANTDOCTOR_CACHE_DIR", str(tmp_path))
    assert (cache_settings().root is None) is off


def test_a_relative_xdg_cache_home_is_ignored(tmp_path, monkeypatch, model_file):
    monkeypatch.delenv("QUANTDOCTOR_NO_CACHE", raising=False)
    monkeypatch.delenv("QUANTDOCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative-cache")
    assert cache_settings().root == tmp_path / "home" / ".cache" / "quantdoctor"
    entry = stored(key_for(model_file), tmp_path)
    assert entry.parent == tmp_path / "home" / ".cache" / "quantdoctor" and entry.is_dir()
    assert not (tmp_path / "relative-cache").exists()
    # Every directory it had to create is private.
    assert stat.S_IMODE((tmp_path / "home" / ".cache").stat().st_mode) == 0o700
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_settings().root == tmp_path / "xdg" / "quantdoctor"


# --- the root never overlaps the user's files ----------------------------------------------------

@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A real SavedModel directory: saved_model.pb, variables/, assets/ and a fingerprint."""
    import tensorflow as tf

    class Scale(tf.Module):
        def __init__(self):
            self.weights = tf.Variable(tf.ones((4, 2)))
            self.vocabulary = tf.saved_model.Asset(str(vocabulary))

        @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.matmul(x, self.weights)}

    folder = tmp_path_factory.mktemp("user")
    vocabulary = folder / "vocabulary.txt"
    vocabulary.write_text("a\nb\n")
    path = folder / "saved_model"
    module = Scale()
    tf.saved_model.save(module, str(path), signatures=module.__call__)
    assert (path / "variables").is_dir() and (path / "assets").is_dir()
    return path


@pytest.mark.parametrize("where", ["the model", "inside the model", "a parent of the model", "a link to the model",
                                   "the data", "the --json output", "a parent of the --json output"])
def test_a_cache_root_overlapping_an_input_or_output_is_refused(where, saved_model, tmp_path, monkeypatch):
    data, report = tmp_path / "calib.npy", tmp_path / "out" / "report.json"
    link = tmp_path / "link"
    link.symlink_to(saved_model)
    root, overlap = {"the model": (saved_model, "is"), "inside the model": (saved_model / "variables" / "cache", "is inside"),
                     "a parent of the model": (saved_model.parent, "contains"), "a link to the model": (link, "is"),
                     "the data": (data, "is"), "the --json output": (report, "is"),
                     "a parent of the --json output": (report.parent, "contains")}[where]
    monkeypatch.delenv("QUANTDOCTOR_NO_CACHE", raising=False)
    monkeypatch.setenv("QUANTDOCTOR_CACHE_DIR", str(root))
    with pytest.raises(UsageError, match=f"refusing to use the cache directory .* it {overlap} your "):
        check_cache_root(inputs=(saved_model, data), outputs={"--json": report, "--output": None})


def test_the_users_savedmodel_as_the_cache_root_is_refused_and_nothing_is_deleted(saved_model, tmp_path):
    before = tree(saved_model)
    np.save(tmp_path / "calib.npy", np.ones((4, 4), np.float32))
    environment = {**os.environ, "QUANTDOCTOR_NO_CACHE": "0", "QUANTDOCTOR_CACHE_DIR": str(saved_model),
                   "QUANTDOCTOR_CACHE_MAX_MB": "0.001"}
    for command in (["diagnose", str(saved_model)], ["fix", str(saved_model)],
                    ["compare", str(saved_model), "--eval-data", str(tmp_path / "calib.npy")]):
        completed = run_in_process(*command, "--data", str(tmp_path / "calib.npy"), env=environment)
        assert completed.returncode == 2, completed.stdout + completed.stderr
        assert completed.stderr.count("\n") == 1
        assert f"refusing to use the cache directory {saved_model} (QUANTDOCTOR_CACHE_DIR): it is your input" \
            in completed.stderr
    assert tree(saved_model) == before


def test_the_python_api_refuses_the_root_too(saved_model, monkeypatch):
    import quantdoctor as qd

    monkeypatch.delenv("QUANTDOCTOR_NO_CACHE", raising=False)
    monkeypatch.setenv("QUANTDOCTOR_CACHE_DIR", str(saved_model / "variables"))
    with pytest.raises(UsageError, match="it is inside your input"):
        qd.diagnose(saved_model, np.ones((4, 4), np.float32))


# --- only quantdoctor's own entries are read or removed ------------------------------------------

def test_foreign_files_under_the_root_are_never_read_removed_or_changed(cache_on, model_file, tmp_path, monkeypatch):
    cache_on.mkdir(mode=0o755)
    os.chmod(cache_on, 0o755)  # a shared cache folder of the user's, readable by others
    (cache_on / "huggingface" / "hub").mkdir(parents=True)
    (cache_on / "huggingface" / "hub" / "model.safetensors").write_bytes(b"weights")
    (cache_on / "pip_cache").mkdir()
    (cache_on / "notes.txt").write_text("mine")
    key = key_for(model_file)
    digest = ModelDigest.take(model_file, FILES).digest
    # A directory with the very name of the entry and the files an entry holds, but no marker: not ours.
    lookalike, _ = worker_output(cache_on / key.entry_name(digest), "foreign")
    (lookalike / cache.RESPONSE).write_text(json.dumps({"stage": "done", "outcome": "ok"}))
    stale = cache_on / ".partial-old"  # an old partial entry without the marker: not ours either
    stale.mkdir()
    os.utime(stale, (0, 0))
    foreign = tree(cache_on)

    assert cache.lookup(key, tmp_path) is None  # never read...
    cache.store(key, digest, *worker_output(tmp_path / "out", "ours"))  # ...nor overwritten
    monkeypatch.setenv("QUANTDOCTOR_CACHE_MAX_MB", "0")  # every entry over the bound
    for number in range(3):  # other models: entries of ours, stored then evicted
        other = tmp_path / f"other{number}.keras"
        other.write_bytes(f"other model {number}".encode())
        entry = stored(key_for(other), tmp_path, tag=f"t{number}")
        assert not entry.exists()
    assert tree(cache_on) == foreign
    assert stat.S_IMODE(cache_on.stat().st_mode) == 0o755


def test_least_recently_used_entries_of_ours_go_first(cache_on, tmp_path, monkeypatch):
    models = []
    for number in range(3):
        models.append(tmp_path / f"model{number}.keras")
        models[-1].write_bytes(f"model {number}".encode())
    entries = [stored(key_for(model), tmp_path, tag=f"t{number}") for number, model in enumerate(models[:2])]
    for age, entry in enumerate(entries):
        os.utime(entry, (1000 + age, 1000 + age))
    assert cache.lookup(key_for(models[0]), tmp_path) is not None  # used: now the most recent
    entry_bytes = sum(f.stat().st_size for f in entries[0].iterdir())
    monkeypatch.setenv("QUANTDOCTOR_CACHE_MAX_MB", str(2.5 * entry_bytes / 2**20))
    newest = stored(key_for(models[2]), tmp_path, tag="t2")
    assert entries[0].is_dir() and newest.is_dir() and not entries[1].exists()
    assert stat.S_IMODE(cache_on.stat().st_mode) == 0o700  # created here, private
    assert {stat.S_IMODE(f.stat().st_mode) for f in newest.iterdir()} == {0o600}


def test_partial_entries_left_by_a_run_that_died_are_removed_once_stale(cache_on, model_file, tmp_path):
    cache_on.mkdir(mode=0o700)
    left = {}
    for name, age in (("old", 2 * 3600), ("writing", 0)):  # a run killed while writing; one writing now
        partial = cache_on / f".partial-{name}"
        partial.mkdir()
        (partial / "quantdoctor-entry").write_bytes(b"quantdoctor conversion cache entry\n")
        (partial / cache.MODEL).write_bytes(b"half a model")
        os.utime(partial, (time.time() - age, time.time() - age))
        left[name] = partial
    stored(key_for(model_file), tmp_path)
    assert not left["old"].exists() and left["writing"].is_dir()


@pytest.mark.parametrize("kind", ["writable by others", "a link"])
def test_a_root_others_could_write_is_not_used_and_not_changed(kind, cache_on, model_file, tmp_path):
    if kind == "a link":
        target = tmp_path / "elsewhere"
        target.mkdir(mode=0o700)
        cache_on.symlink_to(target)
    else:
        cache_on.mkdir()
        os.chmod(cache_on, 0o777)
    stored(key_for(model_file), tmp_path)
    assert list(cache_on.iterdir()) == []
    if kind == "a link":
        assert cache_on.is_symlink()
    else:
        assert stat.S_IMODE(cache_on.stat().st_mode) == 0o777
    assert cache.lookup(key_for(model_file), tmp_path) is None


# --- every file checked on read: any failure is a miss, and the entry goes --------------------------

def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _replace_with_link(path: Path) -> None:
    target = path.parent.parent.parent / "elsewhere"  # a copy outside the cache
    target.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(target)


def _rewrite_consistently(entry: Path, name: str, content: bytes) -> None:
    """Replace a file and its checksum in the manifest: what only parsing can catch."""
    (entry / name).write_bytes(content)
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256(content).hexdigest()
    (entry / "manifest.json").write_text(json.dumps(manifest))


TAMPERING = {
    "corrupt response.json": lambda entry: (entry / cache.RESPONSE).write_text('{"stage": "do'),
    "corrupt quantizer.json": lambda entry: (entry / cache.QUANTIZER).write_text("[1, 2"),
    "truncated model.tflite": lambda entry: _truncate(entry / cache.MODEL),
    "truncated calibrated.tflite": lambda entry: _truncate(entry / cache.CALIBRATED),
    "another model.tflite copied in": lambda entry: (entry / cache.MODEL).write_bytes(b"another model " * 143),
    "float_twin.tflite emptied": lambda entry: (entry / cache.FLOAT_TWIN).write_bytes(b""),
    "a file missing": lambda entry: (entry / cache.QUANTIZER).unlink(),
    "a file turned into a link": lambda entry: _replace_with_link(entry / cache.CALIBRATED),
    "a corrupt manifest": lambda entry: (entry / "manifest.json").write_text("{]"),
    "a response nested past the parser, checksum updated": lambda entry: _rewrite_consistently(
        entry, cache.RESPONSE, b"[" * 100_000),
    "a failed conversion's response, checksum updated": lambda entry: _rewrite_consistently(
        entry, cache.RESPONSE, json.dumps({"stage": "done", "outcome": "error", "tag": "a"}).encode()),
    "quantizer arguments that are not an object, checksum updated": lambda entry: _rewrite_consistently(
        entry, cache.QUANTIZER, b"[]"),
    "a manifest naming another key": lambda entry: (entry / "manifest.json").write_text(
        (entry / "manifest.json").read_text().replace(entry.name, "0" * 64)),
}


@pytest.mark.parametrize("tampering", TAMPERING)
def test_a_tampered_or_corrupt_entry_is_a_miss_and_is_removed(tampering, cache_on, model_file, tmp_path):
    key = key_for(model_file)
    entry = stored(key, tmp_path)
    (tmp_path / "run1").mkdir()
    found = cache.lookup(key, tmp_path / "run1")
    assert found is not None and found.response["tag"] == "a"
    assert found.path(cache.MODEL).read_bytes() == (tmp_path / "out-a" / cache.MODEL).read_bytes()
    TAMPERING[tampering](entry)
    (tmp_path / "run2").mkdir()
    assert cache.lookup(key, tmp_path / "run2") is None
    assert not entry.exists()
    assert list((tmp_path / "run2").iterdir()) == []  # nothing of it left in the run's work directory
    stored(key, tmp_path, tag="b")  # the next run stores its own
    assert cache.lookup(key, tmp_path / "run2").response["tag"] == "b"


def test_an_entry_whose_marker_is_damaged_is_no_longer_ours(cache_on, model_file, tmp_path):
    key = key_for(model_file)
    entry = stored(key, tmp_path)
    (entry / "quantdoctor-entry").write_text("something else\n")
    before = tree(entry)
    assert cache.lookup(key, tmp_path) is None
    assert tree(entry) == before


def test_an_entry_is_a_private_copy_the_cache_can_change_under(cache_on, model_file, tmp_path):
    key = key_for(model_file)
    entry = stored(key, tmp_path)
    found = cache.lookup(key, tmp_path)
    cache._discard(entry)  # evicted by another run while this one works
    assert not entry.exists() and list(entry.parent.iterdir()) == []
    assert found.path(cache.CALIBRATED).read_bytes() == (tmp_path / "out-a" / cache.CALIBRATED).read_bytes()
    assert found.directory.parent == tmp_path


# --- keyed on the model bytes as they were read -------------------------------------------------

def test_a_model_digest_sees_every_change_even_one_undone(tmp_path, saved_model):
    model = tmp_path / "model.keras"
    model.write_bytes(b"weights A")
    taken = ModelDigest.take(model, FILES)
    assert taken.unchanged() and ModelDigest.take(model, FILES).digest == taken.digest
    model.write_bytes(b"weights B")
    model.write_bytes(b"weights A")  # overwritten and restored: same bytes, but it changed
    assert not taken.unchanged() and ModelDigest.take(model, FILES).digest == taken.digest
    renamed = tmp_path / "copy.keras"  # the name is not the model; its suffix picks the loader
    renamed.write_bytes(b"weights A")
    assert ModelDigest.take(renamed, FILES).digest == taken.digest

    directory = tmp_path / "saved"
    directory.mkdir()
    (directory / "saved_model.pb").write_bytes(b"graph")
    (tmp_path / "shared_variables").mkdir()
    (tmp_path / "shared_variables" / "variables.data").write_bytes(b"v1")
    (directory / "variables").symlink_to(tmp_path / "shared_variables")  # a loader follows the link: so does the digest
    first = ModelDigest.take(directory, FILES)
    (tmp_path / "shared_variables" / "variables.data").write_bytes(b"v2")
    assert not first.unchanged() and ModelDigest.take(directory, FILES).digest != first.digest
    second = ModelDigest.take(directory, FILES)
    (directory / "extra").write_bytes(b"")
    assert not second.unchanged()


# --- concurrent runs ---------------------------------------------------------------------------------

CONCURRENT = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[4])
    from quantdoctor.convert import cache
    from quantdoctor.convert.model_identity import FILES, ModelDigest
    from test_cache import key_for, worker_output

    role, workdir, start = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    models = sorted(Path(workdir.parent / "models").iterdir())
    while time.time() < start:
        pass
    hits = 0
    deadline = start + 120
    round = 0
    # Writers store 40 times each; readers look as long and then until they met an entry: after the
    # writers end, at most two whole entries stay for the three models, whatever the timing.
    while round < 40 or (role.startswith("reader") and hits == 0 and time.time() < deadline):
        round += 1
        model = models[round % len(models)]
        key = key_for(model)
        if role.startswith("writer"):
            output, response = worker_output(workdir / f"out{round}", f"{role}-{round}", size=50_000)
            cache.store(key, ModelDigest.take(model, FILES).digest, output, response)
        else:
            (workdir / f"read{round}").mkdir()
            found = cache.lookup(key, workdir / f"read{round}")
            if found is not None:  # whole, and all from one writer
                tag = found.response["tag"]
                assert json.loads(found.path(cache.QUANTIZER).read_text()) == {"tag": tag}, tag
                for name in (cache.MODEL, cache.FLOAT_TWIN, cache.CALIBRATED):
                    assert found.path(name).read_bytes().startswith(f"{tag}:{name}:".encode()), (tag, name)
                hits += 1
    print(hits)
""")


def test_concurrent_runs_never_see_half_an_entry_nor_corrupt_one(cache_on, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for number in range(3):
        (models / f"m{number}.keras").write_bytes(f"model {number}".encode())
    environment = {**os.environ, "QUANTDOCTOR_CACHE_MAX_MB": str(2.5 * 150_000 / 2**20)}  # about two entries
    start = time.time() + 3
    processes = {}
    for role in ("writer1", "writer2", "reader1", "reader2"):
        (tmp_path / role).mkdir()
        processes[role] = subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, role, str(tmp_path / role), str(start), str(Path(__file__).parent)],
            env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {role: process.communicate(timeout=300) for role, process in processes.items()}
    for role, process in processes.items():
        assert process.returncode == 0, (role, results[role][1][-3000:])
    assert int(results["reader1"][0]) + int(results["reader2"][0]) > 0  # the readers did meet entries
    entries = [entry for entry in cache_on.iterdir() if not entry.name.startswith(".")]
    assert entries and len(entries) <= 2
    # Every key's directory is a whole entry: a run emptying one in place while another renamed a new entry
    # onto it (a rename onto an empty directory succeeds) once left a directory holding only response.json.
    assert all(sorted(path.name for path in entry.iterdir()) == sorted([*cache._ENTRY_FILES, "manifest.json",
                                                                      "quantdoctor-entry"]) for entry in entries)
    for model in models.iterdir():  # what is left is whole
        (tmp_path / "check").mkdir(exist_ok=True)
        found = cache.lookup(key_for(model), Path(tmp_path / "check"))
        assert found is None or found.path(cache.MODEL).read_bytes().startswith(found.response["tag"].encode())
    assert not [entry for entry in cache_on.iterdir() if entry.name.startswith(".partial-")]


# --- end to end: the real converter, on tiny models ----------------------------------------------

@pytest.fixture(scope="module")
def user_files(tmp_path_factory) -> Path:
    """Two small Keras models of the user's, and calibration data."""
    import keras
    from models import image_model, smooth_images

    folder = tmp_path_factory.mktemp("files")
    image_model("first").save(folder / "first.keras")
    keras.Sequential([keras.Input((16, 16, 3), name="image"), keras.layers.Conv2D(2, 3, name="other_conv"),
                      keras.layers.Flatten(name="flat"), keras.layers.Dense(3, name="other_head")],
                     name="second").save(folder / "second.keras")
    np.save(folder / "calib.npy", smooth_images(8))
    np.save(folder / "calib2.npy", smooth_images(8, seed=1))
    np.save(folder / "eval.npy", smooth_images(12, seed=2))
    return folder


def only_entry(root: Path) -> Path:
    entries = [entry for entry in root.iterdir() if len(entry.name) == 64]
    assert len(entries) == 1, entries
    return entries[0]


def cli_environment(root: Path, **variables: str) -> dict[str, str]:
    return {**os.environ, "QUANTDOCTOR_NO_CACHE": "0", "QUANTDOCTOR_CACHE_DIR": str(root), **variables}


@pytest.mark.cold_spawn
@pytest.mark.slow
def test_corrupt_and_swapped_entries_are_misses_never_errors(user_files, tmp_path):
    """Today's failures: a corrupt response.json exited 3, a truncated calibrated.tflite crashed the
    budget's variant worker, another .tflite in an entry was written out as the user's model."""
    root = tmp_path / "cache"
    environment = cli_environment(root)
    model, calib = str(user_files / "first.keras"), str(user_files / "calib.npy")
    first = run("diagnose", model, "--data", calib, "--json", str(tmp_path / "first.json"), env=environment)
    entry = only_entry(root)
    pristine = {name: (entry / name).read_bytes() for name in ENTRY_FILES}
    report = json.loads((tmp_path / "first.json").read_text())
    assert first.returncode in (0, 1) and "cached" not in report["conversion"]

    (entry / cache.RESPONSE).write_text('{"stage": "done", "outc')
    again = run("diagnose", model, "--data", calib, "--json", str(tmp_path / "again.json"), env=environment)
    assert again.returncode == first.returncode, again.stderr[-2000:]
    report_again = json.loads((tmp_path / "again.json").read_text())
    assert "cached" not in report_again["conversion"] and report_again["verdict"] == report["verdict"]
    assert [f["code"] for f in report_again["findings"]] == [f["code"] for f in report["findings"]]

    entry = only_entry(root)  # stored again, whole: the next run takes it
    (entry / cache.MODEL).write_bytes(pristine[cache.FLOAT_TWIN])  # another valid .tflite copied in
    output = tmp_path / "out.tflite"
    swapped = run("diagnose", model, "--data", calib, "--output", str(output), "--json", str(tmp_path / "s.json"),
                  env=environment)
    assert swapped.returncode == first.returncode and "cached" not in json.loads((tmp_path / "s.json").read_text())[
        "conversion"]
    assert output.read_bytes() == pristine[cache.MODEL] != pristine[cache.FLOAT_TWIN]

    entry = only_entry(root)
    (entry / cache.CALIBRATED).write_bytes(pristine[cache.CALIBRATED][:200])
    budget = run("fix", model, "--data", calib, "--eval-data", str(user_files / "eval.npy"), "--max-drop", "0.5",
                 "--json", str(tmp_path / "fix.json"), env=environment)
    assert budget.returncode == 0, budget.stdout[-2000:] + budget.stderr[-2000:]
    fixed = json.loads((tmp_path / "fix.json").read_text())
    assert fixed["verified"] and fixed["budget"]["met_budget"]
    assert (only_entry(root) / cache.CALIBRATED).read_bytes() == pristine[cache.CALIBRATED]


@pytest.mark.cold_spawn
def test_an_entry_is_keyed_on_the_model_the_worker_loaded(user_files, cache_on, tmp_path, monkeypatch):
    """The issue's poisoning: the checkpoint is overwritten just as the worker loads it, then restored."""
    import importlib

    import quantdoctor as qd

    diagnose_module = importlib.import_module("quantdoctor.diagnosis.pipeline")  # the package's `diagnose` is the function
    model = tmp_path / "checkpoint.keras"
    model.write_bytes((user_files / "first.keras").read_bytes())
    calib = np.load(user_files / "calib.npy")
    real_run_worker = diagnose_module.run_worker

    def overwritten_while_it_runs(*args, **kwargs):
        original = model.read_bytes()
        model.write_bytes((user_files / "second.keras").read_bytes())
        try:
            return real_run_worker(*args, **kwargs)
        finally:
            model.write_bytes(original)

    monkeypatch.setattr(diagnose_module, "run_worker", overwritten_while_it_runs)
    converted = qd.diagnose(model, calib)
    assert "other_conv" in converted.model["layers"]  # it loaded the other model
    monkeypatch.setattr(diagnose_module, "run_worker", real_run_worker)

    restored = qd.diagnose(model, calib)
    assert not restored.conversion.get("cached")
    assert "conv" in restored.model["layers"]
    other = qd.diagnose(user_files / "second.keras", calib)  # the entry made was the other model's
    assert other.conversion.get("cached") and "other_conv" in other.model["layers"]


def test_a_model_that_changes_during_the_conversion_is_not_stored(user_files, cache_on, tmp_path, monkeypatch):
    import tempfile

    import quantdoctor as qd

    model = tmp_path / "model.keras"
    model.write_bytes((user_files / "first.keras").read_bytes())
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the run's work directory, to watch its stage
    seen: list[str] = []

    def rewrite_once_converting() -> None:
        deadline = time.time() + 600
        while time.time() < deadline:
            for response in tmp_path.glob("quantdoctor-*/response.json"):
                try:
                    stage = json.loads(response.read_text()).get("stage")
                except (OSError, ValueError):
                    continue
                if stage == "converting":
                    model.write_bytes(model.read_bytes())  # the same bytes, written again mid-run
                    seen.append(json.loads(response.read_text())["stage"])
                    return
            time.sleep(0.005)

    watcher = threading.Thread(target=rewrite_once_converting)
    watcher.start()
    report = qd.diagnose(model, np.load(user_files / "calib.npy"))
    watcher.join()
    assert seen == ["converting"], seen  # rewritten while the worker converted
    assert report.tflite_model is not None
    assert not [entry for entry in cache_on.iterdir() if len(entry.name) == 64]


def test_concurrent_runs_share_one_entry_beside_the_users_own_folders(user_files, tmp_path):
    root = tmp_path / "shared-cache"
    root.mkdir()
    os.chmod(root, 0o755)
    for folder in ("huggingface/hub", "pip_cache/wheels"):
        (root / folder).mkdir(parents=True)
        (root / folder / "data.bin").write_bytes(os.urandom(1000))
    foreign = tree(root)
    environment = cli_environment(root)
    model, calib = str(user_files / "first.keras"), str(user_files / "calib.npy")
    runs = [subprocess.Popen([sys.executable.replace("python", "quantdoctor"), "diagnose", model, "--data", calib,
                              "--json", str(tmp_path / f"run{number}.json")], env=environment,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for number in range(2)]
    outcomes = [(process.wait(timeout=600), process.stderr.read()) for process in runs]
    assert outcomes[0][0] == outcomes[1][0] in (0, 1), outcomes
    entry = only_entry(root)
    third = run("diagnose", model, "--data", calib, "--json", str(tmp_path / "run3.json"), env=environment)
    assert third.returncode == outcomes[0][0]
    assert json.loads((tmp_path / "run3.json").read_text())["conversion"]["cached"]
    assert {name: value for name, value in tree(root).items() if not name.startswith(entry.name)} == foreign

    bounded = cli_environment(root, QUANTDOCTOR_CACHE_MAX_MB="0")  # nothing of quantdoctor's may stay
    run("diagnose", model, "--data", str(user_files / "calib2.npy"), env=bounded)
    assert tree(root) == foreign
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
