# Kiln: the two user commands. Everything else is CMake (build/).
#   make demo   install missing packages, build, run the seed example
#   make test   install missing packages, build, run every test (ctest)
#   make bench  build (Release) and run the benchmarks against hand-written C
BUILD := build

.PHONY: demo test bench
demo:
	@scripts/deps.sh
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j2
	./$(BUILD)/examples/seed

test:
	@scripts/deps.sh
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j2
	cd $(BUILD) && ctest --output-on-failure -j2

bench:
	@scripts/deps.sh
	cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release
	cmake --build build-release -j2 --target bench dotbench
	./build-release/bench/bench
	./build-release/bench/dotbench
