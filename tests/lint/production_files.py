# The production C++ files of a source tree, shared by tests/lint/include-rules and size-limits.
# Production: every .cpp/.hpp below the tree but for tests/, bench/, hidden folders and build trees
# (a folder holding CMakeCache.txt, e.g. build/ with its generated sources).
import os

NOT_PRODUCTION = {"tests", "bench"}


def production_files(source_dir):
    """Yields (path relative to source_dir, with '/' separators), sorted."""
    found = []
    for root, dirs, files in os.walk(source_dir):
        relative = os.path.relpath(root, source_dir)
        if relative == ".":
            dirs[:] = [d for d in dirs if d not in NOT_PRODUCTION]
        dirs[:] = [
            d for d in dirs if not d.startswith(".") and not os.path.exists(os.path.join(root, d, "CMakeCache.txt"))
        ]
        for name in files:
            if name.endswith((".cpp", ".hpp")):
                path = os.path.normpath(os.path.join(relative, name)).replace(os.sep, "/")
                found.append(path)
    return sorted(found)
