"""Rebuild tests/data/face: three 150×150 face crops from face-api's sample photos and the descriptors
face-api itself computes for them (tests/face_api_reference.js under node).

    python tests/make_face_fixture.py PACKAGE_DIR NODE_MODULES

PACKAGE_DIR is the unpacked ``npm pack @vladmandic/face-api`` tarball (its ``demo/`` photos and ``model/``);
NODE_MODULES holds @vladmandic/face-api, @tensorflow/tfjs and @tensorflow/tfjs-backend-wasm. The boxes are
the ``alignedRect`` boxes of face-api's tiny face detector + 68-landmark net on those photos, recorded once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from simexplain.models.face import MANIFEST, face_crop

HERE = Path(__file__).parent / "data" / "face"
# crop file → (sample photo, aligned box X, Y, W, H)
CROPS = {
    "sample1_left.png": ("sample1.jpg", (818, 456, 234, 223)),
    "sample2_right.png": ("sample2.jpg", (1428, 189, 245, 220)),
    "sample3_middle.png": ("sample3.jpg", (1033, 257, 294, 268)),
}


def main(package: Path, node_modules: Path) -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ppms = []
        for name, (photo, box) in CROPS.items():
            crop = face_crop(package / "demo" / photo, box).resize((150, 150), Image.BILINEAR)
            crop.save(HERE / name)
            ppms.append(Path(tmp) / name.replace(".png", ".ppm"))
            crop.save(ppms[-1])
        out = Path(tmp) / "reference.json"
        script = Path(__file__).parent / "face_api_reference.js"
        env = dict(os.environ, NODE_PATH=str(node_modules))
        command = ["node", str(script), str(package / "model" / MANIFEST), str(out), *map(str, ppms)]
        subprocess.run(command, check=True, env=env)
        result = json.loads(out.read_text())
    result["descriptors"] = {k.replace(".ppm", ".png"): v for k, v in result["descriptors"].items()}
    result["crops"] = {name: {"photo": photo, "box": box} for name, (photo, box) in CROPS.items()}
    (HERE / "face_api_descriptors.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
