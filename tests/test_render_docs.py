"""bench.render_docs reads the results files as the benchmarks write them, in the formats of November and of today,
so that a newer file can be pinned and rendered in one command."""
from __future__ import annotations

import pytest

from bench import render_docs

# Shapes of today's files, as bench/loader.py, bench/fid.py and bench/eager_ops.py write them (figures made up).
LOADER_NOW = """# Loader throughput, 2026-12-08 01:00

- command: `python -m bench.loader`
- device: Intel(R) Xeon(R) Processor, 2 logical CPUs; 1-minute load average 1.0 before the run, 1.2 after

### 3x32x32: 20480 images (60 MiB)

| contender | images/s, median (min-max) | GB/s read + written, median | fastgan C++'s GB/s / this row's, per round |
|---|---:|---:|---:|
| fastgan C++ (2 threads) | 1,000,000 (900,000-1,100,000) | 15.4 | 1.00 (1.00-1.00) |
| fastgan NumPy path | 100,000 (90,000-110,000) | 1.5 | 10.00 (9.00-11.00) |
| torch DataLoader(per-sample Dataset), 2 workers, 2 torch threads | 40,000 (30,000-50,000) | 0.6 | 25.00 (20.00-30.00) |
| torch DataLoader(per-sample Dataset), 0 workers, 1 torch thread | 80,000 (70,000-90,000) | 1.2 | 12.50 (11.00-14.00) |
| copy: memcpy of the dataset (1 thread) | 3,000,000 (2,900,000-3,100,000) | 18.4 | 0.84 (0.80-0.90) |
"""

FID_NOW = """# FID on the CPU: feature extraction and the Fréchet distance

- command: `python -m bench.fid`
- date: 2026-12-08 01:00 UTC
- device: Intel(R) Xeon(R) Processor, 2 logical CPUs, torch threads 1

## Feature extraction: batches of 50 images 16x16 (resized to 299), 1 batch(es) a round, 5 rounds taking turns

| network | median s / batch | min-max | images/s |
|---|---|---|---|
| torchvision-style InceptionV3 | 2.000 | 1.900-2.100 | 25.00 |
| fastgan InceptionV3 | 1.000 | 0.950-1.050 | 50.00 |

speed-up: **2.00x** (rounds 1.90-2.10)

## frechet_distance vs scipy sqrtm, 2048-d

| method | dim | median s | FID |
|---|---|---|---|
| fastgan.metrics.frechet_distance (potrf + sygst + eigvalsh) | 2048 | 1.500 | 2540.18121 |
| scipy.linalg.sqrtm formula | 2048 | 15.000 | 2540.18121 |

speed-up: **10.0x**; relative difference of the two FIDs: 1.00e-15
"""

OPS_NOW = """# fastgan eager ops vs plain PyTorch, CPU, 2026-12-08

- device: Intel(R) Xeon(R) Processor (2 cores), 1 thread(s)

| op | size | no graph fastgan (us) | no graph eager (us) | no graph ratio (min-max) | fwd fastgan (us) | fwd eager (us) | fwd ratio (min-max) | fwd+bwd fastgan (us) | fwd+bwd eager (us) | fwd+bwd ratio (min-max) |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| bce_with_logits | tiny | 5.0 | 5.0 | 1.00 (0.99-1.01) | 10.0 | 10.0 | 1.00 (0.99-1.01) | 30.0 | 33.0 | 1.10 (1.05-1.15) |
| bce_soft_target | 4096 | 5.0 | 5.0 | 1.00 (0.99-1.01) | 10.0 | 10.0 | 1.00 (0.99-1.01) | - | - | - |
| bce_with_logits | 65536 | 5.0 | 5.0 | 1.00 (0.99-1.01) | 10.0 | 10.0 | 1.00 (0.99-1.01) | 100.0 | 150.0 | 1.50 (1.40-1.60) |
| bias_act | 64x32x8x8 | 5.0 | 5.0 | 1.00 (0.99-1.01) | 10.0 | 10.0 | 1.00 (0.99-1.01) | 200.0 | 190.0 | 0.95 (0.90-1.00) |
"""


@pytest.fixture
def pinned(tmp_path, monkeypatch):
    files = {"loader": ("loader-cpu-2026-12-08-010000.md", LOADER_NOW), "fid": ("fid-cpu-2026-12-08-0100.md", FID_NOW),
             "ops": ("eager-ops-cpu-2026-12-08-0100.md", OPS_NOW)}
    for name, text in files.values():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(render_docs, "RESULTS", tmp_path)
    monkeypatch.setattr(render_docs, "PINNED", {key: name for key, (name, _) in files.items()})


def test_loader_summary_of_todays_format(pinned):
    assert render_docs.loader_summary() == "3x32x32: 1,000,000 vs 80,000 img/s (12.5x; median of rounds)"
    assert render_docs.machine("loader") == "Intel Xeon"
    assert render_docs.when("loader") == "2026-12-08 01:00"


def test_fid_summary_of_todays_format(pinned):
    assert render_docs.fid_summary() == (
        "Feature extraction: fastgan InceptionV3 1.000 s vs torchvision-style InceptionV3 2.000 s a batch of 50 images "
        "(2.00x); "
        "frechet_distance vs scipy sqrtm: fastgan.metrics.frechet_distance 1.500 s vs scipy.linalg.sqrtm formula "
        "15.000 s (10.0x); FIDs agree to 1.00e-15")
    assert render_docs.threads("fid") == "1 thread"


def test_ops_ranges_of_todays_format_skip_rows_without_a_backward(pinned):
    assert render_docs.ops_ranges() == ("bce_with_logits 1.10-1.50x, bias_act 0.95-0.95x", 1, 3)


def test_a_pinned_file_that_is_missing_is_named(pinned, monkeypatch):
    monkeypatch.setitem(render_docs.PINNED, "loader", "loader-cpu-2099-01-01.md")
    with pytest.raises(SystemExit, match="loader-cpu-2099-01-01.md, which does not exist"):
        render_docs.loader_summary()


def test_pin_rewrites_the_one_line_of_pinned(pinned, tmp_path, monkeypatch):
    source = tmp_path / "render_docs.py"
    source.write_text(render_docs.Path(render_docs.__file__).read_text())
    before = source.read_text()
    render_docs.pin_file("loader", "loader-cpu-2026-12-08-010000.md", source)
    after = source.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(changed) == 1 and changed[0][1].startswith('    "loader": "loader-cpu-2026-12-08-010000.md",')
    assert render_docs.PINNED["loader"] == "loader-cpu-2026-12-08-010000.md"
    monkeypatch.setitem(render_docs.PINNED, "fid-extract", None)
    render_docs.pin_file("fid-extract", "fid-cpu-2026-12-08-0100.md", source)  # a key with no file yet
    assert '    "fid-extract": "fid-cpu-2026-12-08-0100.md",' in source.read_text()
    with pytest.raises(SystemExit, match="no such key"):
        render_docs.pin_file("nope", "loader-cpu-2026-12-08-010000.md", source)


def test_loader_summary_takes_the_ratio_the_file_states(pinned):
    path = render_docs.RESULTS / render_docs.PINNED["loader"]
    stated = ("- fastgan C++ at 32 px: 1,000,000 img/s, 15.4 GB/s moved; per round 150 (100-200) % of the round's "
              "fastest copy row (9.9 GB/s); 12.00 (11.00-13.00)x the fastest torch DataLoader row; 5.00 (4.00-6.00)x "
              "the faster in-order torch convert pass\n")
    path.write_text(path.read_text().replace("\n### 3x32x32", stated + "\n### 3x32x32", 1))
    assert render_docs.loader_summary() == (
        "32 px: 1,000,000 img/s, 12.00x the fastest DataLoader row (median of rounds; rounds 11.00-13.00)")
