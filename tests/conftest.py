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
