package troupetest

import dto "github.com/prometheus/client_model/go"

// HasLabels reports whether series m carries every name=value pair of want
// (given as name, value, name, value, …); other labels do not matter.
func HasLabels(m *dto.Metric, want ...string) bool {
	have := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		have[lp.GetName()] = lp.GetValue()
	}
	for i := 0; i+1 < len(want); i += 2 {
		if have[want[i]] != want[i+1] {
			return false
		}
	}
	return true
}
