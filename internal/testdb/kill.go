package testdb

import (
	"fmt"
	"syscall"
)

// Kill ends mariadbd with SIGKILL, as a crash or the OOM killer would: no shutdown, open
// transactions lost, connections reset. Its data directory and port are kept, and connections are
// refused until Start brings it back on them (InnoDB then recovers from its log).
func (m *MariaDB) Kill() error {
	if m.cmd == nil || m.cmd.Process == nil {
		return nil
	}
	if err := m.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("cannot kill mariadbd: %w", err)
	}
	<-m.exited
	m.cmd = nil
	if err := unlisten(m.tcp); err != nil {
		return fmt.Errorf("mariadbd was killed, but its port still listens: %w", err)
	}
	return nil
}

// PID is the process ID of the running mariadbd; 0 when it is not running.
func (m *MariaDB) PID() int {
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}
