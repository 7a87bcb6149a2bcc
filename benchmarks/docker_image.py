"""Image size and (re)build time of nd.containerize, cold: `python benchmarks/docker_image.py [--json OUT]`.

Makes the base image again (so no layer of an earlier build can be reused), builds the image of a 4-feature iris
RandomForest, retrains it, rebuilds, and prints the numbers for benchmarks/README.md. Needs a Docker engine
(scripts/docker-engine.sh) and network access to PyPI for the online build.
"""
import argparse, json, os, tempfile, time

os.environ.setdefault("NBDEPLOY_HOME", tempfile.mkdtemp(prefix="nbdeploy-bench-"))
os.environ.setdefault("DOCKER_BUILDKIT", "0")

from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from nbdeploy.containers import containerize
from nbdeploy.images import base_image, engine
from nbdeploy.packager import package


def timed(f, *a, **kw):
    t0 = time.time()
    out = f(*a, **kw)
    return out, round(time.time() - t0, 1)


def main(out=None):
    X, y = load_iris(return_X_y=True, as_frame=True)
    client = engine()
    base, base_s = timed(base_image, "nbdeploy/python-base:bench", rebuild=True)
    b1 = package(RandomForestClassifier(50, random_state=0).fit(X, y), name="bench-iris", sample=X)
    tag1, cold_s = timed(containerize, b1, base_image=base)
    b2 = package(RandomForestClassifier(60, random_state=1).fit(X, y), name="bench-iris", sample=X)
    tag2, rebuild_s = timed(containerize, b2, base_image=base)
    _, offline_s = timed(containerize, b2, base_image=base, offline=True, tag="nbdeploy/bench-iris:offline")
    r = {"base_image_s": base_s, "base_image_mb": round(client.images.get(base).attrs["Size"] / 1e6),
         "cold_build_s": cold_s, "image_mb": round(client.images.get(tag1).attrs["Size"] / 1e6),
         "rebuild_after_retraining_s": rebuild_s, "offline_build_s": offline_s,
         "offline_image_mb": round(client.images.get("nbdeploy/bench-iris:offline").attrs["Size"] / 1e6)}
    for t in (tag1, tag2, "nbdeploy/bench-iris:offline"): client.images.remove(t, force=True)
    print(json.dumps(r, indent=1))
    if out: open(out, "w").write(json.dumps(r, indent=1))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    main(p.parse_args().json)
