package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clkTck is USER_HZ, the unit of /proc/PID/stat times (100 on Linux).
const clkTck = 100

// SelfCPU returns this process's user+system CPU time (getrusage).
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ProcStat is a server process tree's CPU time and resident memory.
type ProcStat struct {
	CPU time.Duration
	RSS int64 // bytes (VmRSS)
	N   int   // processes counted (the PID and its descendants)
}

// ReadProc reads /proc for pid and all its descendants (ejabberd's
// erl_child_setup, a wrapper's children), summing utime+stime and VmRSS.
func ReadProc(pid int) (ProcStat, error) {
	if pid <= 0 {
		return ProcStat{}, fmt.Errorf("loadgen: no server pid")
	}
	pids := []int{pid}
	if kids, err := descendants(pid); err == nil {
		pids = append(pids, kids...)
	}
	var st ProcStat
	for i, p := range pids {
		cpu, err := procCPU(p)
		if err != nil {
			if i == 0 {
				return ProcStat{}, err
			}
			continue
		}
		rss, err := procRSS(p)
		if err != nil {
			if i == 0 {
				return ProcStat{}, err
			}
			continue
		}
		st.CPU += cpu
		st.RSS += rss
		st.N++
	}
	return st, nil
}

func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command (which may contain spaces) in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("loadgen: bad /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("loadgen: short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	sy, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("loadgen: bad times in /proc/%d/stat", pid)
	}
	return time.Duration(ut+sy) * time.Second / clkTck, nil
}

func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb * 1024, nil
				}
			}
		}
	}
	return 0, nil // kernel threads / zombies have no VmRSS
}

func procPPid(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("bad stat")
	}
	return strconv.Atoi(f[1])
}

func descendants(root int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	parent := map[int]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, err := procPPid(p); err == nil {
			parent[p] = pp
		}
	}
	var out []int
	for p := range parent {
		for q, hops := parent[p], 0; q > 1 && hops < 64; q, hops = parent[q], hops+1 {
			if q == root {
				out = append(out, p)
				break
			}
		}
	}
	return out, nil
}

// Meter measures one interval: wall time, this process's CPU and, when
// a server PID is set, the server's CPU and RSS.
type Meter struct {
	pid     int
	start   time.Time
	self0   time.Duration
	server0 ProcStat
	srvErr  error
}

// StartMeter begins an interval; pid 0 measures only the client.
func StartMeter(pid int) *Meter {
	m := &Meter{pid: pid, start: time.Now(), self0: SelfCPU()}
	if pid > 0 {
		m.server0, m.srvErr = ReadProc(pid)
	}
	return m
}

// Usage is what a Meter measured.
type Usage struct {
	Wall          time.Duration `json:"wall_ns"`
	ClientCPU     time.Duration `json:"client_cpu_ns"`
	ServerCPU     time.Duration `json:"server_cpu_ns,omitempty"`
	ServerRSS     int64         `json:"server_rss_bytes,omitempty"`
	ServerRSSFrom int64         `json:"server_rss_start_bytes,omitempty"`
	ServerErr     string        `json:"server_error,omitempty"`
}

// ClientCores is client CPU per wall second (1.0 = one core busy).
func (u Usage) ClientCores() float64 { return frac(u.ClientCPU, u.Wall) }

// ServerCores is server CPU per wall second.
func (u Usage) ServerCores() float64 { return frac(u.ServerCPU, u.Wall) }

func frac(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Stop ends the interval.
func (m *Meter) Stop() Usage {
	u := Usage{Wall: time.Since(m.start), ClientCPU: SelfCPU() - m.self0}
	if m.pid > 0 {
		if m.srvErr != nil {
			u.ServerErr = m.srvErr.Error()
			return u
		}
		s, err := ReadProc(m.pid)
		if err != nil {
			u.ServerErr = err.Error()
			return u
		}
		u.ServerCPU = s.CPU - m.server0.CPU
		u.ServerRSS = s.RSS
		u.ServerRSSFrom = m.server0.RSS
	}
	return u
}
