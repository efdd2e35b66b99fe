#!/usr/bin/env bash
# Every cross-check at once, in two halves for two machines:
#   tests/crosscheck/all.sh prepare DIR   # here (.NET): tiny llama/mistral/qwen2/gpt-neox and bert/roberta/bart folders, our numbers
#   tests/crosscheck/all.sh check DIR     # there (torch + transformers): theirs on cuda (if present) and cpu, compared
# Exit status of check: 0 when every comparison is within tolerance.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd="${1:?prepare|check}"; dir="${2:?folder}"
prompt="The capital of France is"; completion=" Paris, a city on the Seine."
case "$cmd" in
  prepare)
    refalign="${REFALIGN:-$here/../../refalign}"
    mkdir -p "$dir" && cd "$dir" || exit 2
    for a in llama mistral qwen2 gpt-neox; do
      "$refalign" model init --preset tiny --arch $a --out m-$a --seed 3 >/dev/null
      "$refalign" logprobs --model m-$a --prompt "$prompt" --completion "$completion" --json > ours-$a.json
    done
    printf 'the cat sat on the mat\nA quick brown fox jumps.\nhello world\n' > cands.txt
    printf 'a cat was sitting on a mat\nThe fast brown fox leapt over it.\nhi there world\n' > refs.txt
    for e in tiny-roberta tiny-bert tiny-bart; do
      "$refalign" model init --preset $e --out e-$e --seed 2 >/dev/null
      "$refalign" bertscore --model e-$e -c cands.txt -r refs.txt --idf --json > bs-$e.json
    done ;;
  check)
    cd "$dir" || exit 2
    devices="cpu"; python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" && devices="cuda cpu"
    rc=0
    for dev in $devices; do
      for a in llama mistral qwen2 gpt-neox; do
        echo "== logprobs $a on $dev (our ids)"
        python "$here/compare_transformers.py" --model m-$a --ours ours-$a.json --device $dev || rc=1
        echo "== token ids $a (AutoTokenizer)"
        python "$here/compare_transformers.py" --model m-$a --ours ours-$a.json --text "$prompt" --completion "$completion" --device $dev >/dev/null 2>&1 \
          || echo "ids differ from AutoTokenizer (see README: known differences)"
      done
      for e in tiny-roberta tiny-bert tiny-bart; do
        echo "== bertscore $e on $dev"
        python "$here/bertscore_transformers.py" --model e-$e --candidates cands.txt --references refs.txt --idf --ours bs-$e.json --device $dev || rc=1
      done
    done
    echo "rc=$rc"; exit $rc ;;
  *) echo "usage: $0 prepare|check DIR" >&2; exit 2 ;;
esac
