package domain

import (
	"encoding/json"
	"fmt"
)

// TriggerInstance is the key of a trigger type with concrete parameters. Two
// rules on `core.intervaltimer {unit: seconds, delta: 10}` share one instance,
// so one timer fires for both and each tick is one event.
func TriggerInstance(triggerType string, params map[string]any) string {
	if len(params) == 0 {
		return triggerType
	}
	b, err := json.Marshal(params) // encoding/json sorts map keys: canonical
	if err != nil {
		panic(fmt.Sprintf("trigger parameters of %s are not JSON: %v", triggerType, err))
	}
	return triggerType + string(b)
}
