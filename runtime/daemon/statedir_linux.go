package daemon

import "golang.org/x/sys/unix"

// diskFilesystems are the disk filesystems a state dir is found on, by
// statfs's f_type: those where every file made costs an allocation on
// disk structures, unlike a tmpfs.
var diskFilesystems = map[int64]string{
	unix.EXT4_SUPER_MAGIC:  "ext4", // ext2 and ext3 too
	unix.XFS_SUPER_MAGIC:   "xfs",
	unix.BTRFS_SUPER_MAGIC: "btrfs",
	unix.F2FS_SUPER_MAGIC:  "f2fs",
}

// diskFilesystem names the disk filesystem dir is on, if it is on one.
func diskFilesystem(dir string) (string, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", false
	}
	name, ok := diskFilesystems[int64(st.Type)]
	return name, ok
}
