# OneLab: every kernel of the learner image (JupyterLab's, papermill's, nbgrader's) applies a
# shared GPU's memory cap at start (onelab_gpu.py); a no-op without ONELAB_GPU_MEMORY_FRACTION.
c.InteractiveShellApp.exec_lines = [  # noqa: F821 - `c` is IPython's config object
    "import onelab_gpu as _onelab_gpu; _onelab_gpu.apply(); del _onelab_gpu",
]
