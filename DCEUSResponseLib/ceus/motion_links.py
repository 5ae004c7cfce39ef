"""The link graph of a motion estimate: from matches between frames to one displacement per frame.

Each link of :func:`.motion_matching.collect_links` measures the difference of two frames'
displacements. :func:`solve_links` keeps the links that other links can check (not a bridge of the
graph), fixes a gauge frame at zero, solves the weighted least squares robustly (Cauchy loss) and
marks a frame reliable when enough of its links agree with the solution. See :mod:`.motion`.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.sparse import linalg as sparse_linalg

from DCEUSResponseLib.ceus.motion_matching import Links

#: Cauchy loss scale (px, working resolution) of the robust least squares: disagreements of a
#: pixel or more between links are down-weighted, gross ones (false peaks) effectively ignored.
ROBUST_SCALE_PX = 1.0
ROBUST_ITERATIONS = 6
#: A frame is reliable when at least MIN_CONSISTENT_LINKS of its links agree with the solution
#: within CONSISTENT_LINK_PX (px, full resolution): a single link could be a chance match that
#: nothing corroborates; two chance matches agreeing within 2 px over a +-24 px search are rare.
CONSISTENT_LINK_PX = 2.0
MIN_CONSISTENT_LINKS = 2
#: The reference frame's connected group of linked frames anchors the solution only when it holds at
#: least this fraction of the largest group; otherwise the largest group does (with a warning).
MIN_REFERENCE_COMPONENT_FRACTION = 0.5


def solve_links(links: Links, n_frames: int, reference_frame: int,
                factor: int) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Displacements (full-resolution px) from the link graph, reliability per frame, and a note."""
    displacement = np.zeros((n_frames, 2))
    reliable = np.zeros(n_frames, dtype=bool)
    if n_frames == 1:
        return displacement, np.ones(1, dtype=bool), None
    earlier = np.asarray(links.earlier, dtype=np.int64)
    later = np.asarray(links.later, dtype=np.int64)
    measured = np.asarray(links.shift, dtype=np.float64).reshape(-1, 2)
    rho = np.clip(np.asarray(links.rho, dtype=np.float64), 0.05, 0.98)
    base_weight = rho * rho / (1.0 - rho * rho)

    # A bridge (a link whose removal would leave its two frames unconnected) is checked by no other
    # link: the solution honours it exactly, so a chance match there carries the frames beyond it by
    # up to the search range, and they look reliable (their links all agree with that solution).
    # Seen on a still 768 x 568 x 1,500 clip: 51 bridges among the pre-arrival frames moved them by
    # up to 16 px and made the still clip's motion "significant" (variance ratio 4.2, 1.1 without).
    # This also keeps a black pre-arrival reference frame's lone chance match from fixing the gauge of
    # every displacement. A stretch of frames matched only frame to frame (for more than the longest
    # link offset) is not trusted either: its frames are interpolated. Two frames have one link and
    # nothing to check it by: as for reliability below, it is enough there.
    if n_frames > MIN_CONSISTENT_LINKS:
        checked = ~link_bridges(n_frames, earlier, later)
        earlier, later, measured, base_weight = (a[checked] for a in (earlier, later, measured, base_weight))

    note = None
    graph = sparse.coo_matrix((np.ones(earlier.size), (earlier, later)), shape=(n_frames, n_frames))
    _, component = csgraph.connected_components(graph, directed=False)
    members = np.flatnonzero(component == component[reference_frame])
    gauge = reference_frame
    sizes = np.bincount(component)
    largest = int(np.argmax(sizes))
    # A few structureless frames (pre-arrival speckle) can link to each other by chance; such a
    # cluster around the reference frame must not stand for the clip while most frames are linked
    # elsewhere (seen on 1,500 frames: a 6-frame chance cluster left 1,494 frames unmatched).
    if members.size < 2 or MIN_REFERENCE_COMPONENT_FRACTION * sizes[largest] > members.size:
        if sizes[largest] < 2:
            return displacement, reliable | (np.arange(n_frames) == reference_frame), \
                ("motion: no match between two frames was confirmed by another (each frame needs two that "
                 "agree); no motion compensation is possible on this panel" if len(links.earlier) else
                 "motion: no two frames could be matched; no motion compensation is possible on this panel")
        own = members.size
        members = np.flatnonzero(component == largest)
        gauge = int(members[np.argmin(np.abs(members - reference_frame))])
        note = (f"motion: the reference frame {reference_frame} has no structure to match on this panel; "
                f"displacements are relative to frame {gauge} (choose a reference frame with visible anatomy)"
                if own < 2 else
                f"motion: the reference frame {reference_frame} and the {own - 1} frames matched with it are "
                f"joined to the {members.size} frames around frame {gauge} by no match that another confirms; "
                f"displacements are relative to frame {gauge}, theirs are interpolated in time")

    position = -np.ones(n_frames, dtype=np.int64)
    unknowns = members[members != gauge]
    position[unknowns] = np.arange(unknowns.size)
    in_component = np.isin(earlier, members)
    e, l_, m, w0 = earlier[in_component], later[in_component], measured[in_component], base_weight[in_component]
    solution = np.zeros((n_frames, 2))
    weight = w0.copy()
    for _ in range(ROBUST_ITERATIONS):
        solution[unknowns] = _weighted_solve(e, l_, m, weight, position, unknowns.size)
        residual = np.hypot(*(solution[l_] - solution[e] - m).T)
        weight = w0 / (1.0 + (residual / ROBUST_SCALE_PX) ** 2)
    residual = np.hypot(*(solution[l_] - solution[e] - m).T) * factor
    consistent = residual <= CONSISTENT_LINK_PX
    agreeing = np.bincount(e[consistent], minlength=n_frames) + np.bincount(l_[consistent], minlength=n_frames)
    reliable = agreeing >= min(MIN_CONSISTENT_LINKS, n_frames - 1)
    reliable[gauge] = True
    displacement = solution * factor
    if not reliable.all():
        known = np.flatnonzero(reliable)
        for axis in range(2):
            displacement[~reliable, axis] = np.interp(np.flatnonzero(~reliable), known, displacement[known, axis])
    if gauge != reference_frame:
        # Refer everything to the reference frame's (interpolated) position, as promised.
        displacement -= displacement[reference_frame]
    return displacement, reliable, note


def _weighted_solve(earlier, later, measured, weight, position, n_unknowns) -> np.ndarray:
    """Minimise sum w |d[later] - d[earlier] - measured|^2 with the gauge frame fixed at zero."""
    rows, columns, values = [], [], []
    rhs = np.zeros((n_unknowns, 2))
    p_e, p_l = position[earlier], position[later]
    # The weighted graph Laplacian, without the gauge frame's row and column (position -1).
    for a, b, sign in ((p_l, p_l, 1.0), (p_e, p_e, 1.0), (p_l, p_e, -1.0), (p_e, p_l, -1.0)):
        keep = (a >= 0) & (b >= 0)
        rows.append(a[keep])
        columns.append(b[keep])
        values.append(sign * weight[keep])
    keep = p_l >= 0
    np.add.at(rhs, p_l[keep], weight[keep, None] * measured[keep])
    keep = p_e >= 0
    np.add.at(rhs, p_e[keep], -weight[keep, None] * measured[keep])
    matrix = sparse.csc_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
                               shape=(n_unknowns, n_unknowns))
    # A tiny ridge keeps the system definite if reweighting ever isolates a frame.
    matrix = matrix + sparse.identity(n_unknowns, format="csc") * 1e-9
    return sparse_linalg.splu(matrix).solve(rhs)


def link_bridges(n_frames: int, earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
    """Which links are bridges of the graph of frames they join: on no cycle, so that removing one
    disconnects its two frames. Two links between the same frames are never bridges.

    Tarjan's low-point search, iterative (a clip's frames would exceed Python's recursion limit):
    O(frames + links), a few milliseconds for 1,500 frames and 8,000 links.
    """
    adjacency: list[list[tuple[int, int]]] = [[] for _ in range(n_frames)]
    for index, (first, second) in enumerate(zip(np.asarray(earlier).tolist(), np.asarray(later).tolist())):
        if first != second:
            adjacency[first].append((second, index))
            adjacency[second].append((first, index))
    order = [-1] * n_frames  # discovery order of each frame
    low = [0] * n_frames  # the earliest frame reachable from its subtree by one link not in the tree
    bridge = np.zeros(len(earlier), dtype=bool)
    visited = 0
    for root in range(n_frames):
        if order[root] >= 0 or not adjacency[root]:
            continue
        order[root] = low[root] = visited
        visited += 1
        stack = [(root, -1, iter(adjacency[root]))]  # frame, the link it was reached by, links left
        while stack:
            frame, arrived_by, remaining = stack[-1]
            for other, index in remaining:
                if index == arrived_by:
                    continue
                if order[other] < 0:
                    order[other] = low[other] = visited
                    visited += 1
                    stack.append((other, index, iter(adjacency[other])))
                    break
                low[frame] = min(low[frame], order[other])
            else:
                stack.pop()
                if stack:
                    parent = stack[-1][0]
                    low[parent] = min(low[parent], low[frame])
                    if low[frame] > order[parent]:
                        bridge[arrived_by] = True
    return bridge
