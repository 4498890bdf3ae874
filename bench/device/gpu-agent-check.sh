#!/usr/bin/env bash
# A short check of the node agent on a real GPU host: real NVML inventory, a python model that
# uses CUDA on the GPU the agent allocated, kill -9 of the agent and re-adoption, and DELETE
# freeing the GPU. Run from the repository root with the modelplane binary gzipped at bin/mp.gz;
# results go to $OUT (default ./out).
set -u
OUT=${OUT:-./out}; mkdir -p "$OUT"
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
gunzip -c bin/mp.gz > /tmp/mp && chmod +x /tmp/mp
nvidia-smi -L | tee "$OUT/nvidia-smi-L.txt"
PY=""
for p in python3 /usr/bin/python3 /opt/conda/bin/python /usr/local/bin/python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' 2>/dev/null; then PY=$(command -v "$p"); break; fi
done
log "python with torch: ${PY:-none}"
export MODELPLANE_PYTHON=${PY:-python3}

work=$(mktemp -d); pkg=$work/pkg; mkdir -p "$pkg/model"
cat > "$pkg/config.yaml" <<'Y'
model_name: cuda-check
resources:
  accelerator: H200:1
Y
cat > "$pkg/model/model.py" <<'P'
import os
class Model:
    def __init__(self, **kwargs):
        self.env = kwargs.get("environment")
    def load(self):
        import torch
        self.torch = torch
        self.x = torch.ones(1024, 1024, device="cuda")
    def predict(self, model_input):
        t = self.torch
        y = (self.x * 2).sum().item()
        return {"device_name": t.cuda.get_device_name(0), "device_count": t.cuda.device_count(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "sum": y,
                "environment": self.env, "pid": os.getpid()}
P
tar -C "$pkg" -czf "$work/pkg.tar.gz" config.yaml model
sum=$(sha256sum "$work/pkg.tar.gz" | cut -d' ' -f1)
echo "node-token-for-the-gpu-check-0123" > "$work/token"
T="Authorization: Bearer node-token-for-the-gpu-check-0123"
A=http://127.0.0.1:7070

start_agent() { /tmp/mp agent --gpu-profile "${PROFILE:-real}" --listen 127.0.0.1:7070 --token-file "$work/token" --state-dir "$work/state" --name gpu-check >>"$OUT/agent.log" 2>&1 & echo $! > "$work/agent.pid"; for i in $(seq 1 100); do curl -sf $A/healthz >/dev/null && return 0; sleep 0.1; done; log "agent did not start"; }
start_agent
curl -s -H "$T" $A/v1/inventory > "$OUT/inventory.json"; log "inventory: $(head -c 600 "$OUT/inventory.json")"
curl -s -H "$T" -H 'Content-Type: application/json' -d "{\"replica_id\":\"cuda-1\",\"deployment_id\":\"dep00001\",\"environment\":\"production\",\"archive_url\":\"file://$work/pkg.tar.gz\",\"archive_sha256\":\"$sum\",\"resources\":{\"gpu_count\":1,\"gpu_type\":\"H200\"}}" $A/v1/replicas > "$OUT/start.json"; log "start: $(cat "$OUT/start.json")"
t0=$(date +%s.%N)
for i in $(seq 1 900); do st=$(curl -s -H "$T" $A/v1/replicas/cuda-1); echo "$st" | grep -q '"state":"READY"' && break; echo "$st" | grep -q '"state":"FAILED"' && break; sleep 0.1; done
t1=$(date +%s.%N); log "replica state after $(echo "$t1 - $t0" | bc)s: $st"
addr=$(echo "$st" | sed -n 's/.*"address":"\([^"]*\)".*/\1/p')
curl -s -d '{}' -H 'Content-Type: application/json' "http://$addr/v1/models/model:predict" > "$OUT/predict1.json"; log "predict: $(cat "$OUT/predict1.json")"
nvidia-smi --query-compute-apps=pid,used_memory --format=csv > "$OUT/apps-running.csv"; log "gpu apps: $(tr '\n' ' ' < "$OUT/apps-running.csv")"
kill -9 "$(cat "$work/agent.pid")"; sleep 0.5
curl -s -d '{}' -H 'Content-Type: application/json' "http://$addr/v1/models/model:predict" > "$OUT/predict-agent-dead.json"; log "predict with agent dead: $(cat "$OUT/predict-agent-dead.json")"
start_agent
for i in $(seq 1 100); do st=$(curl -s -H "$T" $A/v1/replicas/cuda-1); echo "$st" | grep -q '"state":"READY"' && break; sleep 0.1; done
log "after restart: $st"
curl -s -d '{}' -H 'Content-Type: application/json' "http://$addr/v1/models/model:predict" > "$OUT/predict2.json"; log "predict after restart: $(cat "$OUT/predict2.json")"
curl -s -X DELETE -H "$T" "$A/v1/replicas/cuda-1?grace_seconds=20" > "$OUT/delete.json"; log "delete: $(cat "$OUT/delete.json")"
sleep 1
nvidia-smi --query-compute-apps=pid,used_memory --format=csv > "$OUT/apps-after.csv"; log "gpu apps after delete: $(tr '\n' ' ' < "$OUT/apps-after.csv")"
curl -s -H "$T" $A/v1/inventory | grep -o '"assigned_replica_id":"[^"]*"' | tee -a "$OUT/summary.txt"
kill "$(cat "$work/agent.pid")"
cp "$work/state/replicas/cuda-1/logs/"*.log "$OUT/" 2>/dev/null
log done
