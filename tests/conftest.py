import pytest
import torch

# Two cores shared with other jobs: a second intra-op thread that gets descheduled makes
# small matrix products ~1000x slower (measured), so tests use one.
torch.set_num_threads(1)


@pytest.fixture
def tiny():
    """A small, fast run config: 32x32 distance with seednet, a few steps on the CPU."""
    from cnnprobe.config import RunConfig, TaskConfig, TrainConfig

    return RunConfig(task=TaskConfig(name="distance", height=32, width=32),
                     train=TrainConfig(batch_size=32, steps=20, eval_every=10, val_size=64,
                                       lr=1e-3, device="cpu"))


@pytest.fixture(scope="session")
def ray_instance():
    """One local Ray for the whole session (ray.init takes ~7 s): every Ray test shares it."""
    import ray

    from cnnprobe.studies import ray_backend as rb

    assert rb.connect(num_cpus=2, num_gpus=0) is ray  # as `study run --backend ray`
    yield ray
    ray.shutdown()


# Each test file's layer, as a marker: `pytest -m tui` runs the TUI's tests alone, `-m
# "engine and not slow"` the engine's (see README, Tests). A new file gets its layer here
# (tests/test_layers.py checks that every file has one).
LAYERS = {
    "engine": ("test_train", "test_step_options", "test_evaluate", "test_inspect",
               "test_inspect_export", "test_linear_probe", "test_measurement", "test_models",
               "test_tasks", "test_gpu_check", "test_learnability", "test_overlap",
               "test_heatmap", "test_paper_models", "test_time_to_learn",
               "test_coordconv_start"),
    "service": ("test_runs", "test_admission", "test_options", "test_inspect_run",
                "test_weights_named"),
    "store": ("test_store", "test_store_bundle", "test_store_processes", "test_runs_query",
              "test_export", "test_bad_export"),
    "cli": ("test_cli", "test_cli_inspect", "test_bad_input", "test_signals"),
    "studies": ("test_study_claims", "test_study_plan", "test_study_ray", "test_study_report",
                "test_study_reproducible", "test_study_run", "test_study_verdict",
                "test_study_workers"),
    "tui": ("test_tui", "test_tui_activations", "test_tui_runs", "test_tui_snapshots",
            "test_tui_startup", "test_tui_studies", "test_scheduler", "test_system",
            "test_textual_private"),
    "layout": ("test_layers", "test_fast_start", "test_settings"),
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}
# A file not listed takes the layer its name starts with.
PREFIXES = (("test_tui_", "tui"), ("test_study_", "studies"), ("test_store_", "store"),
            ("test_cli_", "cli"))


def layer_of(stem: str) -> str | None:
    return LAYER_OF.get(stem) or next((layer for prefix, layer in PREFIXES
                                       if stem.startswith(prefix)), None)


def pytest_collection_modifyitems(config, items):
    for item in items:
        layer = layer_of(item.path.stem)
        if layer is not None:
            item.add_marker(getattr(pytest.mark, layer))
