"""Post-hoc EMA on the server: upload once, list, solve, synthesise, thin under a budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.numpy import load

from ema_core.posthoc_ema import PostHocEMA
from ema_core.posthoc_files import PosthocSnapshot
from ema_core.schedules import sigma_rel_to_gamma
from emaboard_server.app.core.config import Settings
from emaboard_server.app.main import create_app
from emaboard_server.app.posthoc import StoredPosthoc, plan_thinning
from emaboard_server.app.posthoc import _well_posed as well_posed
from tests.backend.conftest import HOSTS, assert_error
from tests.backend.utils import posthoc_bytes, safetensors_bytes
from tests.utils.databases import both_databases


def make_posthoc(folder: Path, steps: int = 200, every: int = 10) -> PostHocEMA:
    """A real PostHocEMA over a small random walk, snapshots every ``every`` steps."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8))
    posthoc = PostHocEMA(model, folder, snapshot_every=every)
    for _ in range(steps):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p), alpha=0.05)
        posthoc.update(model)
    posthoc.flush()
    return posthoc


def upload_file(client: TestClient, run_id: int, path: Path, averager: str, step: int) -> Any:
    return client.post(
        f"/api/runs/{run_id}/snapshots", data={"averager": averager, "step": str(step)},
        files={"file": (path.name, path.read_bytes(), "application/octet-stream")},
    )


def upload_all(client: TestClient, run_id: int, posthoc: PostHocEMA) -> list[dict[str, Any]]:
    out = []
    for snap in posthoc.snapshots:
        response = upload_file(client, run_id, snap.path, snap.averager, snap.step)
        assert response.status_code == 201, response.text
        out.append(response.json())
    return out


@both_databases
def test_upload_list_solve_and_download_match_the_client(
    client: TestClient, run: dict[str, Any], tmp_path: Path
) -> None:
    posthoc = make_posthoc(tmp_path / "snaps")
    stored = upload_all(client, run["id"], posthoc)
    assert {s["kind"] for s in stored} == {"posthoc"}
    listing = client.get(f"/api/runs/{run['id']}/posthoc").json()
    assert listing["sigma_rels"] == [0.05, 0.1] and listing["time_unit"] == "steps"
    assert [s["step"] for s in listing["steps"]] == list(range(10, 201, 10))
    assert listing["grid"][0] == 0.05 and len(listing["grid"]) == 10
    sizes = sum(s["size_bytes"] for s in stored)
    assert listing["storage"] == {"posthoc_bytes": sizes, "snapshot_bytes": sizes,
                                  "budget_bytes": 10 << 30, "over_budget": False}
    assert len(listing["snapshots"]) == 40

    solution = client.get(f"/api/runs/{run['id']}/posthoc/solve",
                          params={"sigma_rel": 0.083, "step": 150}).json()
    assert solution["step"] == 150 and len(solution["coefficients"]) == 30
    assert sum(c["coefficient"] for c in solution["coefficients"]) == pytest.approx(1.0)
    assert solution["ill_posed"] == [] and solution["residual"] < 0.01

    response = client.get(f"/api/runs/{run['id']}/posthoc/file",
                          params={"sigma_rel": 0.083, "step": 150})
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].endswith(
        'demo-run-1-posthoc_sigma_rel_0.083-step150.safetensors"')
    assert response.headers["x-emaboard-ill-posed"] == "0"
    served = load(response.content)
    local = posthoc.reconstruct(0.083, step=150)
    assert set(served) == set(local)
    for key, value in local.items():
        np.testing.assert_array_equal(served[key], value.numpy())
    assert list((tmp_path / "data" / "tmp").iterdir()) == []  # the temporary file is gone


def test_a_retried_upload_is_stored_once(
    client: TestClient, run: dict[str, Any], settings: Settings
) -> None:
    url = f"/api/runs/{run['id']}/snapshots"
    data = {"averager": "ema_sigma_rel_0.05", "step": "10"}
    payload = posthoc_bytes(10, 0.05)  # (safetensors orders metadata differently each time)
    first = client.post(url, data=data, files={"file": ("a", payload)})
    again = client.post(url, data=data, files={"file": ("a", payload)})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert len(list((settings.data_dir / "snapshots").rglob("*.safetensors"))) == 1
    other = client.post(url, data=data,
                        files={"file": ("a", posthoc_bytes(10, 0.05, scale=2.0))})
    assert other.status_code == 409  # as every snapshot: another file at the same key
    assert [s["id"] for s in client.get(url, params={"kind": "posthoc"}).json()] == [
        first.json()["id"]]
    assert client.get(url, params={"kind": "snapshot"}).json() == []
    assert len(list((settings.data_dir / "snapshots").rglob("*.safetensors"))) == 1


def test_bad_post_hoc_uploads_are_refused_naming_the_problem(
    client: TestClient, run: dict[str, Any], settings: Settings
) -> None:
    url = f"/api/runs/{run['id']}/snapshots"
    mismatch = client.post(url, data={"averager": "ema_sigma_rel_0.1", "step": "10"},
                           files={"file": ("a", posthoc_bytes(10, 0.05))})
    assert_error(mismatch, 400, "Invalid post-hoc snapshot: the form says averager "
                 "'ema_sigma_rel_0.1' step 10, the file's metadata 'ema_sigma_rel_0.05' step "
                 "10; send the file's own")
    broken = safetensors_bytes({"snapshot_kind": "posthoc", "averager": "a", "step": "1"})
    assert_error(client.post(url, data={"averager": "a", "step": "1"},
                             files={"file": ("b.safetensors", broken)}), 400,
                 "Invalid post-hoc snapshot: Post-hoc snapshot 'b.safetensors' lacks metadata "
                 "['time', 'time_unit', 'gamma', 'sigma_rel', 'update_every', "
                 "'update_after_step', 'fingerprint']")
    assert list((settings.data_dir / "snapshots").rglob("*.safetensors")) == []


def test_solve_and_file_errors(client: TestClient, run: dict[str, Any]) -> None:
    base = f"/api/runs/{run['id']}/posthoc"
    assert_error(client.get(f"{base}/solve", params={"sigma_rel": 0.1}), 404,
                 "No post-hoc EMA snapshots in this run")
    assert_error(client.get(f"{base}/file", params={"sigma_rel": 0.1}), 404,
                 "No post-hoc EMA snapshots in this run")
    assert_error(client.get("/api/runs/999/posthoc"), 404, "Run not found")
    for step in (10, 20):
        for sigma in (0.05, 0.1):
            client.post(f"/api/runs/{run['id']}/snapshots",
                        data={"averager": f"ema_sigma_rel_{sigma!r}", "step": str(step)},
                        files={"file": ("a", posthoc_bytes(step, sigma))})
    assert_error(client.get(f"{base}/solve", params={"sigma_rel": 0.3}), 422,
                 "Invalid sigma_rel 0.3: expected 0 < sigma_rel < 0.2887")
    assert_error(client.get(f"{base}/file", params={"sigma_rel": 0.1, "step": 15}), 422,
                 "No post-hoc snapshot at step 15: snapshots exist at steps [10, 20]; pick one "
                 "of them")
    narrow = client.get(f"{base}/solve", params={"sigma_rel": 0.03}).json()
    assert narrow["ill_posed"][0].startswith("sigma_rel 0.03 is narrower than every snapshot's")
    other_model = posthoc_bytes(30, 0.05, fingerprint="ffffffffffffffff")
    client.post(f"/api/runs/{run['id']}/snapshots",
                data={"averager": "ema_sigma_rel_0.05", "step": "30"},
                files={"file": ("a", other_model)})
    response = client.get(f"{base}/solve", params={"sigma_rel": 0.1, "step": 30})
    assert response.status_code == 409
    assert "is of another model (fingerprint 'ffffffffffffffff'" in response.json()["error"][
        "message"]


def stored(times: list[float], size: int = 100, sigmas=(0.05, 0.1)) -> list[StoredPosthoc]:
    out, next_id = [], 1
    for t in times:
        for sigma in sigmas:
            record = PosthocSnapshot(
                path=Path("x"), averager=f"ema_sigma_rel_{sigma}", step=int(t), time=t,
                time_unit="steps", gamma=sigma_rel_to_gamma(sigma), sigma_rel=sigma,
                update_every=1, update_after_step=0, fingerprint="f", copied_keys=(),
                metadata={},
            )
            out.append(StoredPosthoc(next_id, size, record))
            next_id += 1
    return out


def test_thinning_removes_the_oldest_times_first_and_keeps_reconstructions_well_posed() -> None:
    times = [100.0 * i for i in range(1, 41)]  # 40 times x 2 sigma_rels x 100 bytes = 8,000
    snaps = stored(times)
    assert plan_thinning(snaps, 8000) == [] and plan_thinning(snaps, 0) == []
    doomed = set(plan_thinning(snaps, 6000))
    kept = sorted({s.record.time for s in snaps if s.id not in doomed})
    assert len(kept) == 30  # 10 times (2,000 bytes) went
    gone = sorted(set(times) - set(kept))
    # oldest first, as soon as neighbours are within √2 (500 -> 700), then every other one
    assert gone == [600.0, 800.0, 1000.0, 1100.0, 1300.0, 1400.0, 1500.0, 1700.0, 1800.0, 1900.0]
    assert kept[0] == 100.0 and kept[-1] == 4000.0  # the first and the latest stay
    assert all(b <= 2**0.5 * a for a, b in zip(kept[4:], kept[5:], strict=False))
    sigmas = list(np.geomspace(0.05, 0.2, 5))
    arrays = (np.array([s.record.time for s in snaps if s.id not in doomed]),
              np.array([s.record.gamma for s in snaps if s.id not in doomed]))
    assert all(well_posed(*arrays, 4000.0, sigmas))


def test_thinning_stops_where_a_reconstruction_would_become_ill_posed() -> None:
    snaps = stored([100.0 * i for i in range(1, 11)])
    doomed = set(plan_thinning(snaps, 1))  # an impossible budget
    kept = sorted({s.record.time for s in snaps if s.id not in doomed})
    assert kept[0] == 100.0 and kept[-1] == 1000.0 and len(kept) >= 4


@both_databases
def test_uploads_over_the_budget_are_thinned_on_the_server(
    tmp_path: Path, database_url: str
) -> None:
    settings = Settings(data_dir=tmp_path / "data", allowed_hosts=HOSTS,
                        database_url=database_url,
                        posthoc_budget_bytes=20 * len(posthoc_bytes(1, 0.05)))
    with TestClient(create_app(settings)) as client:
        run = client.post("/api/runs", json={"project": "p", "name": "r"}).json()
        for step in range(10, 310, 10):  # 30 times x 2 = 60 files, budget 20
            for sigma in (0.05, 0.1):
                response = client.post(
                    f"/api/runs/{run['id']}/snapshots",
                    data={"averager": f"ema_sigma_rel_{sigma!r}", "step": str(step)},
                    files={"file": ("a", posthoc_bytes(step, sigma))})
                assert response.status_code == 201
        listing = client.get(f"/api/runs/{run['id']}/posthoc").json()
        steps = [s["step"] for s in listing["steps"]]
        assert steps[0] == 10 and steps[-1] == 300
        assert listing["storage"]["posthoc_bytes"] == len(listing["snapshots"]) * len(
            posthoc_bytes(1, 0.05))
        files = list((settings.data_dir / "snapshots").rglob("*.safetensors"))
        assert len(files) == len(listing["snapshots"]) < 60
        over = listing["storage"]["over_budget"]
        assert over == (listing["storage"]["posthoc_bytes"] > settings.posthoc_budget_bytes)
        solution = client.get(f"/api/runs/{run['id']}/posthoc/solve",
                              params={"sigma_rel": 0.15}).json()
        assert solution["ill_posed"] == []
