#!/bin/bash
# Builds the Python 3.12 packages that a lent GPU machine lacks into one folder to carry there.
#
# The GPU machines lent to some sessions run Python 3.12 with torch (CUDA), numpy 2, scipy,
# matplotlib and tqdm, and reach no package index; this machine runs Python 3.11. So: PyBullet
# built from its sdist for 3.12 against numpy 2 (PyPI has no cp312 wheel; stripped, its .so is
# 8 MB, and of pybullet_data only the Panda is kept), lie_learn (escnn's SO(3) helper) compiled
# again for 3.12 and numpy 2 with its J-matrix table cut to l <= 20 (the planar groups use none of
# it), and the pure-Python wheels unpacked. About 25 MB in all, under the 64 MiB a call carries.
#
#   scripts/gpu_site_packages.sh [OUT]        # OUT defaults to .gpu/site312 (ignored by git)
#
# Then, in the device call: carry .gpu, and run with PYTHONPATH=$PWD/.gpu/site312:$PWD, e.g.
#   python3 -c 'import sys; from equimanip.cli import main; sys.exit(main())' train sac --device cuda ...
# Needs pyenv's Python 3.12 (/root/.pyenv/versions/3.12.*) and a C/C++ compiler; 4.5 minutes on the idle
# 2-core build machine.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.gpu/site312}
PY312=$(ls -d /root/.pyenv/versions/3.12.*/bin/python3 | head -1)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude

"$PY312" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q --upgrade pip wheel setuptools "numpy==2.3.*" "cython>=3" \
    requests cloudpickle typing_extensions scipy   # the last four: for the import check at the end (the GPU image has them)

# PyBullet: numpy support is compiled in only when numpy is importable at build time.
"$WORK/venv/bin/pip" download -q --no-deps --no-binary=:all: pybullet==3.2.7 -d "$WORK"
"$WORK/venv/bin/pip" wheel -q --no-deps --no-build-isolation -w "$WORK/wheels" "$WORK"/pybullet-3.2.7.tar.gz
mkdir -p "$OUT"
(cd "$OUT" && unzip -q -o "$WORK"/wheels/pybullet-*.whl 'pybullet.cpython-312-*.so' 'pybullet_data/__init__.py' \
    'pybullet_data/franka_panda/*' && strip pybullet.cpython-312-*.so)

# lie_learn from the 3.11 environment's sources: language level 2 (its print statements) and
# numpy 2's integer type names.
cp -r "$(.venv/bin/python -c 'import lie_learn, os; print(os.path.dirname(lie_learn.__file__))')" "$WORK/lie_learn"
find "$WORK/lie_learn" \( -name '*.so' -o -name '*.c' -o -name __pycache__ \) -prune -exec rm -rf {} +
for f in $(find "$WORK/lie_learn" -name '*.pyx'); do
    sed -i -E 's/np\.int_t\b/np.int64_t/g; s/np\.int\b([^0-9_]|$)/np.int64\1/g; s/np\.float_t\b/np.float64_t/g' "$f"
done
cat > "$WORK/setup_lie_learn.py" <<'EOF'
from Cython.Build import cythonize
from setuptools import Extension, setup
import numpy
modules = ["lie_learn/representations/SO3/pinchon_hoggan/pinchon_hoggan", "lie_learn/representations/SO3/irrep_bases",
           "lie_learn/spaces/spherical_quadrature", "lie_learn/groups/SO3"]
extensions = [Extension(m.replace("/", "."), [m + ".pyx"], include_dirs=[numpy.get_include()]) for m in modules]
setup(name="lie_learn_build", ext_modules=cythonize(extensions, language_level=2), script_args=["build_ext", "--inplace"])
EOF
(cd "$WORK" && venv/bin/python setup_lie_learn.py > lie_learn_build.log 2>&1)
find "$WORK/lie_learn" -name '*.so' -exec strip {} +
find "$WORK/lie_learn" \( -name '*.c' -o -name '*.pyx' -o -name 'J_block_*.npy' \) -delete
"$WORK/venv/bin/python" - "$WORK/lie_learn/representations/SO3/pinchon_hoggan/J_dense_0-150.npy" <<'EOF'
import sys
import numpy as np
path = sys.argv[1]
np.save(path, np.load(path, allow_pickle=True)[:21], allow_pickle=True)
EOF
rm -rf "$OUT/lie_learn" && cp -r "$WORK/lie_learn" "$OUT/lie_learn"

# Pure-Python packages at the versions this project's environment has.
version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
wheels=()
for name in escnn pymanopt autograd gymnasium farama-notifications transforms3d pytorch-mppi \
            arm-pytorch-utilities pytorch-seed; do
    wheels+=("$name==$(version "$name")")
done
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform any -d "$WORK/pure" "${wheels[@]}"
for w in "$WORK"/pure/*.whl; do (cd "$OUT" && unzip -q -o "$w"); done

PYTHONPATH="$OUT" "$WORK/venv/bin/python" -c "import pybullet, gymnasium, transforms3d
import lie_learn.representations.SO3.wigner_d as w
assert w.wigner_D_matrix(2, 0.1, 0.2, 0.3).shape == (5, 5)"
du -sh "$OUT"
