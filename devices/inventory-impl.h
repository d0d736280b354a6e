/* devices/inventory-impl.h — what devices/inventory.c shares with the CUDA
 * half of the inventory (devices/cuda/inventory_cuda.c) and with the probe. */
#ifndef STRATA_INVENTORY_IMPL_H
#define STRATA_INVENTORY_IMPL_H

#include <hwloc.h>

#include "devices/device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills dev->numa_node, dev->cpuset, dev->pcie_gen and dev->pcie_width for the
 * PCI device dev->pci_bus_id ("0000:3b:00.0"): from hwloc's PCI objects when the
 * topology has them, else from /sys/bus/pci/devices/<id>/. Leaves -1 / "" / 0
 * where nothing is known. */
void st_inventory_locate_pci(hwloc_topology_t topo, struct st_device_info *dev);

#ifdef STRATA_HAVE_CUDA
/* Lists the CUDA devices visible to this process (CUDA_VISIBLE_DEVICES applies).
 * On success *gpus is a malloc'ed array of *n_gpus entries (kind CUDA, index =
 * cuda ordinal) and *p2p a malloc'ed n_gpus x n_gpus matrix (row-major, [i][j]
 * = i -> j). With no driver or no device it returns ST_OK, *n_gpus = 0, NULLs,
 * and writes the reason into reason. Errors on a present device are returned. */
st_status st_inventory_cuda_discover(hwloc_topology_t topo, struct st_device_info **gpus, int *n_gpus,
                                     struct st_p2p **p2p, char *reason, size_t reason_len);
#endif

#ifdef __cplusplus
}
#endif
#endif
