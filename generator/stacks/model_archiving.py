"""model-archiving: the artifact bucket holding model.tar.gz archives and Lambda zips."""

from __future__ import annotations

from troposphere import Ref, Template

from .. import naming, resources

CONCERN = "model-archiving"


def build(cfg) -> Template:
    """Versioned, encrypted artifact bucket exported for the stacks that deploy from it."""
    t = Template(
        Description=f"{naming.prefix(cfg)} model archiving: artifact bucket (models, functions)"
    )
    t.set_version("2010-09-09")
    archiving = cfg.model_archiving
    bucket = resources.bucket(
        t,
        "ArtifactBucket",
        retain=archiving.retain_on_delete,
        versioned=True,
        lifecycle=[resources.noncurrent_expiry(archiving.noncurrent_version_expiry_days)],
        description="model.tar.gz archives and Lambda zips, keyed by content hash",
    )
    naming.export(cfg, t, CONCERN, "ArtifactBucketName", Ref(bucket), "Artifact bucket name")
    return t
