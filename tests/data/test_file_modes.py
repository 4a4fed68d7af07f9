"""Files elt writes follow the umask (a group project shares its run directories)."""

import subprocess
import sys


def test_written_files_follow_the_umask(tmp_path):
    code = ("import os, stat; os.umask(0o002)\n"
            "from elt.data.frames import atomic_write_text\n"
            f"atomic_write_text(os.path.join({str(tmp_path)!r}, 'f.json'), '{{}}')\n"
            f"print(oct(stat.S_IMODE(os.stat(os.path.join({str(tmp_path)!r}, 'f.json')).st_mode)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "0o664"  # not mkstemp's 0600
