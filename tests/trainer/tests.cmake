# trainer/ suites (included by tests/CMakeLists.txt).
skillpack_test(trainer/tasks_test sp_trainer_tasks)
skillpack_test(trainer/train_test sp_trainer)
skillpack_test(trainer/data_test sp_trainer)
skillpack_test(trainer/job_test sp_trainer_job)
# These two start the real skillpack-trainer binary.
skillpack_test(trainer/distributed_test sp_trainer_dist sp_model)
add_dependencies(trainer_distributed_test skillpack-trainer)
skillpack_test(trainer/sft_tiny_test sp_base)
add_dependencies(trainer_sft_tiny_test skillpack-trainer)
# Distillation against in-process fake sources and reward service.
skillpack_test(trainer/distill_test sp_trainer_job)
# Distill -> SFT -> compress -> publish against real skillpack-server processes.
skillpack_test(trainer/distill_e2e_test sp_trainer_job)
add_dependencies(trainer_distill_e2e_test skillpack-trainer skillpack-server)
# The Trainer gRPC service: the real `skillpack-trainer serve`.
skillpack_test(trainer/trainer_service_test skillpack_proto sp_base)
add_dependencies(trainer_trainer_service_test skillpack-trainer)
