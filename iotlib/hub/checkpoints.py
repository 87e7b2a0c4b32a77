"""What consumer groups left in a checkpoint container: checkpoints and ownership, read as they lie.

``BlobCheckpointStore`` (azure-eventhub's Blob checkpoint store, which every iotlib consumer and
most Azure deployments use) keeps one blob per partition under
``<namespace>/<event hub>/<consumer group>/checkpoint/<partition>`` with the sequence number in
its metadata (``sequencenumber``) — its last-modified time is when the checkpoint was written —
and one under ``…/ownership/<partition>`` whose ``ownerid`` names the processor holding it (empty
once released). The names are lower-cased. One listing of ``<namespace>/<event hub>/`` gives
every group of that hub at once, which is also how an unknown group is told apart from one that
simply has not checkpointed yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError, ResourceNotFoundError

from iotlib.errors import HubError
from iotlib.hub.lag import Checkpoint, GroupRecords, Owner

if TYPE_CHECKING:
    from azure.storage.blob.aio import ContainerClient


async def read_container(container: ContainerClient, namespace: str, eventhub: str) -> dict[str, GroupRecords] | None:
    """Every consumer group's records for ``eventhub`` in ``container``, by lower-cased group name.

    None when the container does not exist.
    """
    prefix = f"{namespace}/{eventhub}/".lower()
    found: dict[str, tuple[dict[str, Checkpoint], dict[str, Owner]]] = {}
    try:
        async for blob in container.list_blobs(name_starts_with=prefix, include=["metadata"]):
            parts = blob.name[len(prefix) :].split("/")
            if len(parts) != 3 or parts[1] not in ("checkpoint", "ownership"):
                continue
            group, kind, pid = parts
            checkpoints, owners = found.setdefault(group, ({}, {}))
            meta = dict(blob.metadata or {})
            if kind == "ownership":
                owners[pid] = Owner(meta.get("ownerid") or None, blob.last_modified)
            elif meta.get("sequencenumber") not in (None, ""):
                checkpoints[pid] = Checkpoint(int(meta["sequencenumber"]), blob.last_modified)
    except ResourceNotFoundError:
        return None
    except AzureError as exc:
        said = (getattr(exc, "message", None) or str(exc)).strip().splitlines()
        raise HubError(
            f"cannot list checkpoint container '{container.container_name}': {said[0] if said else exc}"
        ) from exc
    name = container.container_name
    return {g: GroupRecords(g, name, checkpoints, owners) for g, (checkpoints, owners) in found.items()}
