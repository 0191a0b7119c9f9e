"""Write a synthetic subject map and a deletion request by subject, for trying the per-subject
scenario on CIFAR-10 (which has no people in it): each subject owns `--images` training images,
most of them (`--favourite` share) from one class of their own, as a person's photos cluster.

    python scripts/make_subject_requests.py --out runs/subjects [--subjects 2500 --images 20 --request 125]
    unlearnkit run --forget file:runs/subjects/requests.csv --subjects runs/subjects/subjects.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from unlearnkit.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", default="runs/subjects")
    parser.add_argument("--subjects", type=int, default=2500, help="number of subjects")
    parser.add_argument("--images", type=int, default=20, help="training images per subject")
    parser.add_argument("--favourite", type=float, default=0.7, help="share of a subject's images from their favourite class")
    parser.add_argument("--request", type=int, default=125, help="subjects who ask to be forgotten")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    labels = load_dataset(args.data).train_y
    rng = np.random.default_rng(args.seed)
    unowned = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)}
    rest = list(rng.permutation(len(labels)))
    taken: set[int] = set()
    owner_rows = []
    for subject in range(args.subjects):
        favourite = int(rng.integers(len(unowned)))
        wanted = round(args.favourite * args.images)
        images = []
        while len(images) < args.images:
            pool = unowned[favourite] if len(images) < wanted and unowned[favourite] else rest
            if not pool:
                raise SystemExit("not enough training images for that many subjects")
            index = int(pool.pop())
            if index not in taken:
                taken.add(index)
                images.append(index)
        owner_rows += [(f"s{subject:05d}", index) for index in images]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "subjects.csv", "w", newline="") as f:
        csv.writer(f).writerows([("subject_id", "sample_id"), *owner_rows])
    asking = rng.choice(args.subjects, args.request, replace=False)
    with open(out / "requests.csv", "w", newline="") as f:
        csv.writer(f).writerows([("subject_id",), *((f"s{s:05d}",) for s in sorted(asking))])
    print(f"wrote {out / 'subjects.csv'} ({args.subjects} subjects × {args.images} images) and {out / 'requests.csv'} ({args.request} subjects, {args.request * args.images} images)")


if __name__ == "__main__":
    main()
